import pytest
import torch

from tppeft.backbones import BackboneError, build_backbone, frozen_state_digest
from tppeft.config import BackboneConfig


def test_b0_loads_with_metadata_and_decoder(b0):
    assert (b0.image_size, b0.patch_size, b0.embed_dim) == (64, 8, 192)
    assert b0.mean == (0.5, 0.5, 0.5) and b0.std == (0.5, 0.5, 0.5)
    assert "dec_pos" in b0.decoder_state and b0.decoder_meta["dim"] == 128
    assert not any(p.requires_grad for p in b0.model.parameters())
    assert len(b0.identity["sha256"]) == 64


def test_other_input_size_resamples_position_embedding():
    b = build_backbone(BackboneConfig(), image_size=96)
    assert b.image_size == 96 and b.model.pos_embed.shape == (1, 1 + 12 * 12, 192)
    # b0's MAE decoder comes along with its position table resampled to the 12x12 grid (used on request)
    assert b.decoder_resampled and b.decoder_state["dec_pos"].shape == (1, 1 + 12 * 12, 128)
    assert b.model(torch.zeros(1, 3, 96, 96)).shape == (1, 192)


def test_unknown_timm_name_is_clear():
    with pytest.raises(BackboneError, match="not a timm model"):
        build_backbone(BackboneConfig(name="vit_nonexistent_model_42"))
    with pytest.raises(BackboneError, match="closest ViT names: vit_tiny_patch16_224"):
        build_backbone(BackboneConfig(name="vit_tiny_patch16_22", checkpoint=None))
    with pytest.raises(BackboneError, match="a timm model is named as timm:NAME"):
        build_backbone(BackboneConfig(checkpoint="vit_small_patch16_224"))


def test_pretrained_offline_names_local_alternative(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # the hub reads the variable once, at import: set its constant too, or the test waits on network timeouts
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(BackboneError, match="backbone.checkpoint"):
        build_backbone(BackboneConfig(name="vit_tiny_patch16_224", checkpoint=None, pretrained=True),
                       image_size=32)


def _hub_cache(monkeypatch, tmp_path, weights: dict | None) -> None:
    """A local hub cache in ``tmp_path`` holding timm's default vit_tiny weights (``weights``) or nothing."""
    import huggingface_hub.constants
    from safetensors.torch import save_file

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    if weights is not None:
        repo = tmp_path / "models--timm--vit_tiny_patch16_224.augreg_in21k_ft_in1k"
        (repo / "snapshots" / ("0" * 40)).mkdir(parents=True)
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text("0" * 40)
        save_file(weights, str(repo / "snapshots" / ("0" * 40) / "model.safetensors"))


def test_unreachable_hub_uses_the_local_cache_or_fails_at_once(monkeypatch, tmp_path):
    """Without a route to the hub the weights come from the local hub cache, with no network attempt (no
    minute of retries); without them there, the error says so and names the local alternative."""
    import huggingface_hub.constants
    import timm

    from tppeft.backbones.formats import hub

    monkeypatch.setattr(hub, "hub_reachable", lambda timeout=3.0: False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    cfg = BackboneConfig(name="vit_tiny_patch16_224", checkpoint=None, pretrained=True)
    _hub_cache(monkeypatch, tmp_path / "empty", None)
    with pytest.raises(BackboneError, match="unreachable and the weights are not in the local hub cache.*bundled:b0"):
        build_backbone(cfg)
    assert huggingface_hub.constants.HF_HUB_OFFLINE is False  # offline mode only for that call
    ref = {k: v.contiguous() for k, v in timm.create_model("vit_tiny_patch16_224").state_dict().items()}
    _hub_cache(monkeypatch, tmp_path / "cache", ref)
    model = build_backbone(cfg).model
    assert torch.equal(model.state_dict()["blocks.3.mlp.fc1.weight"], ref["blocks.3.mlp.fc1.weight"])
    assert huggingface_hub.constants.HF_HUB_OFFLINE is False
    # the same weights named as a checkpoint: timm:NAME
    named = build_backbone(BackboneConfig(checkpoint="timm:vit_tiny_patch16_224"))
    assert named.identity["layout"] == "timm" and frozen_state_digest(named.model) == frozen_state_digest(model)


def test_hub_probe(monkeypatch):
    import huggingface_hub.constants

    from tppeft.backbones.formats.hub import PROXY_VARIABLES, hub_reachable

    for v in PROXY_VARIABLES:
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "https://hub.invalid")  # .invalid never resolves
    assert hub_reachable(timeout=1.0) is False
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")  # behind a proxy: nothing to probe
    assert hub_reachable(timeout=1.0) is True


def test_random_init_and_missing_checkpoint(tmp_path):
    b = build_backbone(BackboneConfig(checkpoint=None), image_size=32)
    assert b.image_size == 32 and b.decoder_state is None
    with pytest.raises(BackboneError, match="does not exist"):
        build_backbone(BackboneConfig(checkpoint=str(tmp_path / "x.safetensors")))


def test_checkpoint_without_metadata_is_read_from_its_shapes(tmp_path, b0):
    import shutil
    # without its metadata, b0's encoder is read from its shapes: 64 px, patch 8, width 192, depth 12
    shutil.copy(b0_path(), tmp_path / "weights.safetensors")
    plain = build_backbone(BackboneConfig(checkpoint=str(tmp_path / "weights.safetensors")))
    assert (plain.image_size, plain.patch_size, plain.identity["name"]) == (64, 8, "vit_tiny_patch16_224")
    assert plain.identity["arch_kwargs"]["num_heads"] == 3 and plain.decoder_state is None
    assert frozen_state_digest(plain.model) == frozen_state_digest(b0.model)
    # a timm name that disagrees with the shapes (patch 16, 224 px) is an error naming both
    with pytest.raises(BackboneError, match=r"backbone.name 'vit_tiny_patch16_224' \(width 192, depth 12, patch 16, "
                       r"224 px\) disagrees with .*weights.safetensors' \(width 192, depth 12, patch 8, 64 px\)"):
        build_backbone(BackboneConfig(name="vit_tiny_patch16_224", checkpoint=str(tmp_path / "weights.safetensors")))


def test_sha256_names_the_one_checkpoint_a_config_accepts(tmp_path, b0):
    import shutil
    digest = b0.identity["sha256"]
    for given in (digest, digest[:12].upper()):  # the whole digest or a prefix, in either case
        assert build_backbone(BackboneConfig(sha256=given)).identity["sha256"] == digest
    shutil.copytree(b0_path().parent, tmp_path / "b0")
    other = tmp_path / "b0" / b0_path().name
    raw = bytearray(other.read_bytes())
    raw[-3] ^= 1  # one bit of one weight: another backbone
    other.write_bytes(bytes(raw))
    with pytest.raises(BackboneError, match=rf"{other.name}' has SHA-256 [0-9a-f]{{16}}\.\.\., but backbone.sha256 "
                       rf"asks for {digest[:16]}\.\.\.: it is another backbone"):
        build_backbone(BackboneConfig(checkpoint=str(other), sha256=digest))
    for bad, why in (({"sha256": "abc"}, "12 to 64 hex digits"), ({"sha256": "g" * 12}, "12 to 64 hex digits"),
                     ({"sha256": digest, "checkpoint": None}, "with backbone.checkpoint null there is none")):
        with pytest.raises(ValueError, match=why):
            BackboneConfig(**bad)


def b0_path():
    from tppeft.bundled import resolve
    return resolve("bundled:b0")


def test_digest_detects_any_change(b0):
    m = b0.fresh_model()
    d = frozen_state_digest(m)
    assert frozen_state_digest(b0.fresh_model()) == d
    with torch.no_grad():
        m.blocks[3].mlp.fc1.weight[0, 0] += 1e-7
    assert frozen_state_digest(m) != d



def test_global_pool_chooses_the_feature_heads_read():
    from tppeft.pretext.encoder import pooled
    from tppeft.tasks.classification import Classifier

    x = torch.rand(2, 3, 64, 64)
    own = build_backbone(BackboneConfig(checkpoint="bundled:b0"))
    avg = build_backbone(BackboneConfig(checkpoint="bundled:b0", global_pool="avg"))
    tokens = own.model.forward_features(x)
    assert torch.equal(tokens, avg.model.forward_features(x))  # the tokens themselves are untouched
    assert torch.equal(pooled(own.model, tokens), tokens[:, 0])  # b0's own: the class token
    mean = tokens[:, own.model.num_prefix_tokens:].mean(1)
    assert torch.allclose(pooled(avg.model, tokens), mean)  # the mean of the patch tokens
    head = Classifier(avg.model, 2)
    assert torch.allclose(head(x), head.head(mean), atol=1e-6)  # what the classification head reads
    with pytest.raises(ValueError, match="global_pool"):
        BackboneConfig(global_pool="max")
