"""The 3D ViT made from b0: inflation (exact on depth-constant volumes), position table, target-parameter methods
and masked-image pretext tasks on 3D patches, the 3D UNETR decoder, and both 3D tasks through the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from nifti_data import write_msd

from tppeft.backbones import build_backbone
from tppeft.cli import main
from tppeft.config import BackboneConfig, ConfigError, PeftConfig, PretextConfig, load_config
from tppeft.data import to_model_input
from tppeft.pretext import get_pretext
from tppeft.pretext.masking import patch_targets, patchify_volumes
from tppeft.targets import get_target_method
from tppeft.tasks.vit3d import ViTSegmenter3D
from tppeft.tasks.vit3d.decoder import depth_factor


@pytest.fixture(scope="module")
def b3():
    return build_backbone(BackboneConfig(dims=3, volume_depth=8), 32)


def test_inflated_embedding_of_a_depth_constant_volume_is_the_2d_one():
    """Patch embedding + position table of a volume constant along depth equal the 2D model's for its slice, at
    every depth position; the 2D normalisation (here unequal per channel) is folded into the kernel and bias."""
    mean, std = (0.2, 0.4, 0.6), (0.3, 0.5, 0.7)
    b2 = build_backbone(BackboneConfig(mean=mean, std=std), 32)
    b3 = build_backbone(BackboneConfig(mean=mean, std=std, dims=3, patch_depth=2, volume_depth=8), 32)
    assert b3.mean == (0.0,) and b3.std == (1.0,) and b3.identity["dims"] == 3
    vit2, vit3 = b2.model, b3.model
    assert vit3.patch_embed.grid_size == (4, 4, 4) and vit3.pos_embed.shape == (1, 1 + 64, 192)
    assert vit3.patch_embed.proj.weight.shape == (192, 1, 2, 8, 8)
    x = torch.rand(2, 32, 32)
    e2 = vit2._pos_embed(vit2.patch_embed(to_model_input(x[:, None], torch.tensor(mean), torch.tensor(std))))
    e3 = vit3._pos_embed(vit3.patch_embed(x[:, None].expand(2, 8, 32, 32)))
    assert torch.allclose(e3[:, 0], e2[:, 0])
    assert torch.allclose(e3[:, 1:].view(2, 4, 16, 192), e2[:, None, 1:].expand(2, 4, 16, 192), atol=1e-5)
    assert not any(p.requires_grad for p in vit3.parameters())


def test_3d_patches_are_in_token_order(b3):
    """patchify_volumes orders patches as the Conv3d patch embedding orders its tokens."""
    vol = torch.rand(2, 8, 32, 32)
    conv = torch.nn.Conv3d(1, 1, (4, 8, 8), stride=(4, 8, 8), bias=False)
    torch.nn.init.constant_(conv.weight, 1 / 256)
    means = conv(vol[:, None]).flatten(2)[:, 0]
    patches = patchify_volumes(vol, (4, 8, 8))
    assert patches.shape == (2, 32, 256) and torch.allclose(patches.mean(-1), means, atol=1e-6)
    assert torch.equal(patch_targets(b3.model, vol), patches)
    assert torch.equal(patches[0, 1], vol[0, 0:4, 0:8, 8:16].reshape(-1))  # token 1: next column, same depth


@pytest.mark.parametrize("method", ["mae", "simmim"])
def test_masked_image_pretexts_train_lora_on_3d_patches(b3, method):
    vit = b3.fresh_model()
    get_target_method(PeftConfig()).attach(vit)
    task = get_pretext(PretextConfig(method=method))(b3, vit, PretextConfig(method=method))
    loss = task.loss(torch.rand(2, 8, 32, 32), torch.Generator().manual_seed(0))
    loss.backward()
    grads = [p.grad for n, p in vit.named_parameters() if "lora_B" in n]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)
    with pytest.raises(ConfigError, match="no MAE decoder"):  # b0's decoder predicts 2D patches
        get_pretext(PretextConfig(decoder="pretrained"))(b3, b3.fresh_model(), PretextConfig(decoder="pretrained"))
    with pytest.raises(ConfigError, match="makes 2D views"):
        get_pretext(PretextConfig(method="simclr"))(b3, b3.fresh_model(), PretextConfig(method="simclr"))


def test_3d_decoder_levels_and_shapes(b3):
    assert [depth_factor(j, 4) for j in range(4)] == [1, 2, 4, 4]  # depth grows by 2 at the two finest levels
    vit = b3.fresh_model()
    get_target_method(PeftConfig(method="vpt_deep")).attach(vit)
    model = ViTSegmenter3D(vit, 3, channels=4)
    out = model(torch.rand(2, 8, 32, 32))
    assert out.shape == (2, 3, 8, 32, 32) and model.feature_blocks == [3, 7, 11]
    out.square().mean().backward()
    assert vit.blocks.prompts.grad is not None
    odd = build_backbone(BackboneConfig(dims=3, patch_depth=3, volume_depth=9), 32)
    with pytest.raises(ConfigError, match="patch depth"):
        ViTSegmenter3D(odd.fresh_model(), 2)
    with pytest.raises(ConfigError, match="multiple of backbone.patch_depth"):
        load_config(None, ["backbone.dims=3", "backbone.volume_depth=10"])


TINY = ["pretext.probe=false", "threads=1", "seeds=1", "pretext.epochs=1", "finetune.epochs=1", "pretext.batch_size=4",
        "finetune.batch_size=4", "data.image_size=32", "backbone.dims=3", "backbone.volume_depth=8"]


def _sets(values: list[str]) -> list[str]:
    return [a for s in values for a in ("--set", s)]


def test_3d_segmentation_comparison(tmp_path):
    out = tmp_path / "run"
    root = write_msd(tmp_path / "msd", n=10)
    assert main(["run", "-o", str(out), *_sets([*TINY, f"data.path={root}"])]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["task"] == "segmentation3d" and summary["backbone"]["dims"] == 3
    assert "3D ViT sees each volume resized to 8x32x32" in summary["metric_note"]
    assert summary["arms"]["tpp"]["pretext_loss_end"] < summary["arms"]["tpp"]["pretext_loss_start"]
    assert np.load(out / "runs/tpp/seed0/examples.npz")["pred"].shape[1:] == (12, 12)  # slices of stored volumes
    assert (out / "examples.png").is_file()


def test_3d_volume_classification_and_2d_data_refused(tmp_path, capsys):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 8), ("val", 4), ("test", 4)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 12, 12, 12), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 2).astype(np.uint8)[:, None]
    np.savez(tmp_path / "vol.npz", **arrays)
    out = tmp_path / "run"
    assert main(["run", "-o", str(out), *_sets([*TINY, f"data.path={tmp_path / 'vol.npz'}"])]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["task"] == "volume" and summary["metrics"] == ["acc", "auc"]
    assert "resized to 8x32x32" in summary["metric_note"]
    capsys.readouterr()
    assert main(["run", "-o", str(tmp_path / "no"), *_sets([*TINY, "data.limit=8"])]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("tppeft: error: backbone.dims: 3 reads volumes") and not (tmp_path / "no").exists()
    np.savez(tmp_path / "more.npz", train_images=arrays["train_images"])  # the pool reads central slices of these
    extra = f"pretext.data=[{{path: {tmp_path / 'more.npz'}}}]"
    assert main(["run", "-o", str(tmp_path / "more"), *_sets([*TINY, f"data.path={tmp_path / 'vol.npz'}", extra])]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "pretext.data adds 2D images" in err and not (tmp_path / "more").exists()
