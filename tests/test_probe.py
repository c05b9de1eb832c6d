"""TPP diagnostics: the linear probe chooses C on validation and scores test; LoRA update norms by hand."""

import numpy as np
import peft
import pytest
import timm
import torch

from tppeft.probe import PROBE_CS, linear_probe, lora_update_norms, movement, probe_run


def _split(rng, n, informative):
    y = np.arange(n) % 2
    x = rng.normal(size=(n, 8))
    if informative:
        x[:, 0] += 3 * y
    return x, y


def test_probe_reads_information_and_ignores_noise():
    rng = np.random.default_rng(0)
    good = linear_probe(*(_split(rng, 80, True) for _ in range(3)), metric="auc")
    noise = linear_probe(*(_split(rng, 80, False) for _ in range(3)), metric="auc")
    assert good["test"] > 0.95 and good["C"] in PROBE_CS
    assert 0.25 < noise["test"] < 0.75
    acc = linear_probe(*(_split(rng, 80, True) for _ in range(3)), metric="acc")
    assert acc["metric"] == "acc" and acc["test"] > 0.85


def test_multiclass_auc_is_one_vs_rest():
    rng = np.random.default_rng(1)

    def split():
        y = np.arange(90) % 3
        x = rng.normal(size=(90, 4))
        x[np.arange(90), y] += 4
        return x, y

    assert linear_probe(split(), split(), split(), metric="auc")["test"] > 0.95


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, num_classes=0, depth=2)


def test_probe_run_uses_frozen_features(vit):
    torch.manual_seed(0)
    images = {s: torch.randn(24, 3, 32, 32) for s in ("train", "val", "test")}
    labels = {s: np.arange(24) % 2 for s in images}
    for s in images:  # brighter images are class 1
        images[s][torch.from_numpy(labels[s]).bool()] += 2
    out = probe_run(vit, lambda s: [images[s][:12], images[s][12:]], labels.get, "auc")
    assert out["test"] > 0.9 and vit.training


def test_lora_update_norm_is_scaled_BA_over_W(vit):
    model = peft.get_peft_model(vit, peft.LoraConfig(r=2, lora_alpha=4, target_modules=["qkv"]))
    assert lora_update_norms(model)["max"] == 0  # B starts at zero
    layer = model.base_model.model.blocks[0].attn.qkv
    torch.nn.init.normal_(layer.lora_B["default"].weight)
    norms = lora_update_norms(model)
    delta = 2.0 * layer.lora_B["default"].weight @ layer.lora_A["default"].weight
    want = float(delta.detach().norm() / layer.base_layer.weight.norm())
    assert norms["max"] == pytest.approx(want, rel=1e-5) and len(norms["per_layer"]) == 2
    assert lora_update_norms(timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=1)) is None


def test_movement_is_relative_to_the_start():
    before = {"a": torch.ones(4), "b": torch.zeros(2)}
    after = {"a": torch.ones(4) * 2, "b": torch.zeros(2)}
    assert movement(before, after)["relative_change"] == pytest.approx(1.0)
    assert movement({"z": torch.zeros(3)}, {"z": torch.ones(3)})["relative_change"] is None
