import torch
from conftest import BREAST

from tppeft.backbones import build_backbone
from tppeft.config import BackboneConfig, PeftConfig, PretextConfig
from tppeft.data import load_medmnist, resize_images, to_model_input
from tppeft.pretext import get_pretext
from tppeft.pretext.heads import MAEDecoder
from tppeft.pretext.mae import encode_visible
from tppeft.pretext.masking import patchify, random_keep_indices
from tppeft.targets import get_target_method


def test_masking_is_per_image_and_restorable():
    g = torch.Generator().manual_seed(0)
    keep, restore = random_keep_indices(4, 64, 0.75, g, torch.device("cpu"))
    assert keep.shape == (4, 16) and restore.shape == (4, 64)
    assert all(len(set(k.tolist())) == 16 for k in keep) and not torch.equal(keep[0], keep[1])


def test_patchify_layout_is_channel_row_column():
    x = torch.arange(2 * 3 * 16 * 16, dtype=torch.float32).view(2, 3, 16, 16)
    p = patchify(x, 8)
    assert p.shape == (2, 4, 192)
    assert torch.equal(p[1, 1], x[1, :, 0:8, 8:16].reshape(-1))


def test_encoder_on_all_tokens_matches_timm_forward(b0):
    vit = b0.fresh_model()
    x = torch.randn(2, 3, 64, 64)
    keep = torch.arange(64).expand(2, -1)
    assert torch.allclose(encode_visible(vit, x, keep), vit.forward_features(x), atol=1e-5)


def test_b0_decoder_loads_and_fresh_decoder_has_same_interface(b0):
    cfg = PretextConfig()
    task = get_pretext(cfg)(b0, b0.fresh_model(), cfg)
    assert task.decoder_source == "pretrained" and not task.head_param_groups(1.0)  # frozen by default
    fresh = get_pretext(cfg)(b0, b0.fresh_model(), PretextConfig(decoder="fresh"))
    assert fresh.decoder_source == "fresh" and fresh.head_param_groups(1.0)[0]["lr"] == 1.0
    latent = torch.randn(2, 17, 192)
    _, restore = random_keep_indices(2, 64, 0.75, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert MAEDecoder(192, 64, 192, 32, 1)(latent, restore, 1).shape == (2, 64, 192)


def test_b0_reconstructs_real_images_better_than_a_fresh_decoder(b0):
    ds = load_medmnist(BREAST, limit=64)
    x = to_model_input(resize_images(ds["val"].images, 64), torch.tensor(b0.mean), torch.tensor(b0.std))
    losses = {}
    for decoder in ("pretrained", "fresh"):
        task = get_pretext(PretextConfig())(b0, b0.fresh_model(), PretextConfig(decoder=decoder))
        with torch.no_grad():
            losses[decoder] = float(task.loss(x, torch.Generator().manual_seed(0)))
    assert losses["pretrained"] < 0.7 < losses["fresh"]


def test_resampled_b0_decoder_at_another_input_size():
    """At 32 px, ``auto`` keeps to a fresh decoder (b0's was trained at 64 px); ``pretrained`` loads b0's with its
    position table resampled to the 4x4 grid, and it still reconstructs far better than a fresh one."""
    b = build_backbone(BackboneConfig(), image_size=32)
    ds = load_medmnist(BREAST, limit=64)
    x = to_model_input(resize_images(ds["val"].images, 32), torch.tensor(b.mean), torch.tensor(b.std))
    losses, tasks = {}, {}
    for decoder in ("auto", "pretrained", "fresh"):
        task = tasks[decoder] = get_pretext(PretextConfig())(b, b.fresh_model(), PretextConfig(decoder=decoder))
        with torch.no_grad():
            losses[decoder] = (task.decoder_source, float(task.loss(x, torch.Generator().manual_seed(0))))
    assert losses["auto"][0] == "fresh" and losses["pretrained"][0] == "resampled pretrained"
    resampled = b.decoder_state["dec_pos"]
    assert resampled.shape == (1, 1 + 4 * 4, 128) and torch.equal(tasks["pretrained"].decoder.dec_pos, resampled)
    assert losses["pretrained"][1] < 0.8 < 1.1 < losses["fresh"][1]  # measured: 0.63 and 1.34


def test_tpp_steps_lower_the_pretext_loss_on_real_data(b0):
    """A few optimisation steps of the target parameters alone lower the MAE loss on a fixed real batch."""
    torch.manual_seed(0)
    ds = load_medmnist(BREAST, limit=32)
    x = to_model_input(resize_images(ds["train"].images, 64), torch.tensor(b0.mean), torch.tensor(b0.std))
    vit = b0.fresh_model()
    _, names = get_target_method(PeftConfig()).attach(vit)
    cfg = PretextConfig()
    task = get_pretext(cfg)(b0, vit, cfg)
    params = [p for p in vit.parameters() if p.requires_grad]

    def fixed_loss():
        return task.loss(x, torch.Generator().manual_seed(123))

    with torch.no_grad():
        before = float(fixed_loss())
    opt = torch.optim.AdamW(params, lr=3e-3, weight_decay=0)
    for _ in range(8):
        opt.zero_grad()
        fixed_loss().backward()
        opt.step()
    with torch.no_grad():
        after = float(fixed_loss())
    assert after < before - 0.01, (before, after)


def test_the_warning_after_a_tpp_stage_says_whether_the_loss_fell_a_little_or_not_at_all():
    from tppeft.experiment.pretext_stage import gain_warning

    assert gain_warning(0.5, 0.4) is None
    assert "by less than 1%" in gain_warning(0.5, 0.498)
    for end in (0.5, 0.6, float("nan")):
        warning = gain_warning(0.5, end)
        assert "did not lower" in warning and "less than" not in warning
    # DINO's teacher moves during the stage: a loss that did not fall is no verdict, the probe is
    from tppeft.pretext.dino import SelfDistillation

    assert SelfDistillation.moving_target
    for end in (0.5, 0.498, 0.6):
        warning = gain_warning(0.5, end, moving_target=True)
        assert "teacher that moved" in warning and "pretext.probe" in warning and "nothing" not in warning
    assert gain_warning(0.5, 0.4, moving_target=True) is None
    assert "did not lower" in gain_warning(0.5, float("nan"), moving_target=True)  # not a number: still an alarm


def test_dino_names_its_uniform_collapse(b0):
    """A student output spread evenly over K prototypes has cross-entropy ln K: DINO's collapse, named as such."""
    import math

    from tppeft.pretext.dino import SelfDistillation

    cfg = PretextConfig(method="dino", dino={"out_dim": 64})
    task = SelfDistillation(b0, b0.fresh_model(), cfg)
    assert "DINO collapsed" in task.collapse_warning(math.log(64) - 0.01) and "ln 64" in task.collapse_warning(4.2)
    assert task.collapse_warning(math.log(64) * 0.9) is None


def test_lengths_in_steps_become_whole_epochs_of_the_stage_images():
    """`pretext.steps` (and the warm-ups' steps) in epochs: the stage rounded up to whole epochs, the LR warm-up
    exact; a config without them is returned as it is."""
    cfg = PretextConfig(steps=670, warmup_steps=22, head_warmup_steps=67)
    few, many = cfg.in_epochs(3), cfg.in_epochs(67)  # 200 and 4,317 images in steps of 64
    assert (few.epochs, few.warmup_epochs, few.head_warmup_epochs) == (224, 22 / 3, 23)
    assert (many.epochs, many.warmup_epochs, many.head_warmup_epochs) == (10, 22 / 67, 1)
    assert few.steps == 670  # what was asked stays in the record
    plain = PretextConfig(epochs=7)
    assert plain.in_epochs(3) is plain
