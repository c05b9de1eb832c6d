"""Every registered pretext task on a fixed real batch: a finite scalar loss, gradients on target parameters
and its own head only, an unchanged backbone, and a loss that a few optimisation steps lower."""

import pytest
import torch
from conftest import BREAST

from tppeft.backbones import frozen_state_digest
from tppeft.config import PeftConfig, PretextConfig
from tppeft.data import load_medmnist, resize_images, to_model_input
from tppeft.pretext import get_pretext, list_pretexts
from tppeft.targets import get_target_method

pytestmark = pytest.mark.usefixtures("one_thread")

TASKS = ["mae", "simmim", "dino", "simclr", "featdistill"]
# DINO's loss is measured against a teacher and a centre that move with training, so it is not a fixed
# objective; the descent check freezes both (momentum 1, no centring). Their updates are tested apart
# (test_pretext_ema.py, test_pretext_losses.py).
FIXED_OBJECTIVE = {"dino": {"dino": {"momentum": 1.0, "center_momentum": 1.0}}}


def test_every_task_is_registered():
    assert set(TASKS) <= set(list_pretexts())
    assert all(list_pretexts()[t] for t in TASKS)
    assert all(get_pretext(PretextConfig(method=t)).name == t for t in list_pretexts())


@pytest.fixture(scope="module")
def batch(b0):
    ds = load_medmnist(BREAST, limit=8)
    return to_model_input(resize_images(ds["train"].images, 64), torch.tensor(b0.mean), torch.tensor(b0.std))


def build(b0, method: str, **options):
    torch.manual_seed(0)
    vit = b0.fresh_model()
    _, names = get_target_method(PeftConfig()).attach(vit)
    cfg = PretextConfig(method=method, **options)
    return vit, names, get_pretext(cfg)(b0, vit, cfg)


@pytest.mark.parametrize("method", TASKS)
def test_task_trains_only_target_params_and_head_and_lowers_its_loss(b0, batch, method):
    template = frozen_state_digest(b0.model)
    vit, names, task = build(b0, method, **FIXED_OBJECTIVE.get(method, {}))
    frozen = frozen_state_digest(vit, set(names))
    targets = dict(vit.named_parameters())
    trainable = [targets[n] for n in names] + task.head_parameters()
    assert task.head_parameters() or method == "mae", f"{method} has no trained head"  # b0's decoder: frozen

    def fixed_loss():
        return task.loss(batch, torch.Generator().manual_seed(7))

    task.eval()
    with torch.no_grad():
        before = fixed_loss()
        again = fixed_loss()
    assert before.ndim == 0 and torch.isfinite(before) and float(before) > 0
    assert float(again) == float(before), "the held-out loss must be a pure function of weights and generator"

    task.train()
    opt = torch.optim.AdamW(trainable, lr=1e-3, weight_decay=0)
    for step in range(5):
        opt.zero_grad(set_to_none=True)
        loss = fixed_loss()
        loss.backward()
        if step == 0:
            with_grad = {id(p) for p in task.parameters() if p.grad is not None}
            assert with_grad == {id(p) for p in trainable if p.grad is not None}
            assert {id(p) for p in trainable} == with_grad, "every target parameter and head tensor gets a gradient"
            assert all(p.grad is None for p in b0.model.parameters())
        opt.step()
        task.after_step()
    task.eval()
    with torch.no_grad():
        after = float(fixed_loss())
    assert after < float(before) * 0.98, (method, float(before), after)
    assert frozen_state_digest(vit, set(names)) == frozen, "the run's frozen backbone weights changed"
    assert frozen_state_digest(b0.model) == template, "the shared backbone template changed"


def test_mae_options(b0, batch):
    _, _, fresh = build(b0, "mae", decoder="fresh", decoder_dim=64, decoder_depth=1, decoder_heads=2,
                        norm_pix_loss=False)
    assert fresh.decoder.dec_blocks[0].attn.num_heads == 2 and len(fresh.decoder.dec_blocks) == 1
    assert "fresh decoder, trained" in fresh.describe()
    _, _, tuned = build(b0, "mae", train_decoder=True, decoder_lr_scale=0.5)
    (group,) = tuned.head_param_groups(2.0)
    assert group["lr"] == 1.0 and "pretrained decoder, trained" in tuned.describe()
    # the normalised-pixel target and the raw-pixel target give different losses on the same masks
    _, _, raw = build(b0, "mae", norm_pix_loss=False)
    _, _, norm = build(b0, "mae", norm_pix_loss=True)
    with torch.no_grad():
        assert float(raw.loss(batch, torch.Generator().manual_seed(0))) != float(
            norm.loss(batch, torch.Generator().manual_seed(0)))


def test_featdistill_starts_from_the_backbones_own_features(b0, batch):
    """With nothing masked the student is the backbone itself (LoRA B = 0, zero-initialised predictor)."""
    _, _, task = build(b0, "featdistill", featdistill={"tokens": "all"})
    task.cfg.mask_ratio = 1e-6  # keeps 64 of 64 patches
    with torch.no_grad():
        assert float(task.loss(batch, torch.Generator().manual_seed(0))) < 1e-8


@pytest.mark.parametrize("target_method", ["vpt_deep", "bitfit"])
@pytest.mark.parametrize("method", ["dino", "featdistill"])
def test_teachers_work_with_added_and_selected_target_params(b0, batch, method, target_method):
    """Prompts (added tokens) and BitFit (selected backbone biases) are target parameters like LoRA's: the EMA
    teacher tracks them and the feature teacher (the template) keeps the backbone's own values."""
    template = frozen_state_digest(b0.model)
    vit = b0.fresh_model()
    _, names = get_target_method(PeftConfig(method=target_method)).attach(vit)
    cfg = PretextConfig(method=method)
    task = get_pretext(cfg)(b0, vit, cfg)
    task.loss(batch[:4], torch.Generator().manual_seed(0)).backward()
    params = dict(vit.named_parameters())
    assert all(params[n].grad is not None for n in names)
    if method == "dino":
        assert {f"vit.{n}" for n in names} <= set(task.teacher.names)
    with torch.no_grad():
        for n in names:
            params[n].add_(1.0)
    assert frozen_state_digest(b0.model) == template
