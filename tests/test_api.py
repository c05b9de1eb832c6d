"""The Python API: ``tppeft.run`` on a user's image folder (with TensorBoard logging), and each stage on a
user's own model and images in every form it accepts."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import timm
import torch
from conftest import write_image_folder
from peft import PeftModel
from torch.utils.data import DataLoader, TensorDataset

import tppeft
from tppeft.config import ConfigError
from tppeft.data import DataError
from tppeft.rundir import OutputError

SMALL = {"image_size": 32, "batch_size": 8, "targets": ["qkv"], "threads": 1}


def test_import_is_torch_free_and_offers_the_api():
    code = "import sys, tppeft; print('torch' in sys.modules, sorted(tppeft.__all__))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split(" ", 1)[0] == "False"
    import tppeft.experiment.context  # noqa: F401 (loaded: the API's names stay functions)

    for name in ("run", "pretrain", "finetune", "evaluate", "load_data", "load_backbone"):
        assert name in out and callable(getattr(tppeft, name))


@pytest.fixture(scope="module")
def images():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(24, 1, 16, 16, generator=gen)
    y = torch.arange(24) % 2
    x[y == 1] = x[y == 1] * 0.5 + 0.5  # the classes differ in brightness
    return x, y


@pytest.fixture(scope="module")
def pretrained(images):
    return tppeft.pretrain("bundled:b0", images[0], epochs=2, **SMALL)


def test_run_on_a_folder_returns_the_summary_and_logs_to_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    root = write_image_folder(tmp_path / "pets", counts=(8, 4, 4), classes=("dog", "cat"))
    config = {"seeds": 1, "threads": 1, "data": {"path": str(root), "image_size": 32},
              "pretext": {"epochs": 2, "batch_size": 8}, "finetune": {"epochs": 2, "batch_size": 8},
              "peft": {"targets": ["qkv"]}, "log": {"tensorboard": True}}
    summary = tppeft.run(config, output=tmp_path / "out", log=lambda s: None)
    assert summary["class_names"] == ["cat", "dog"] and summary["data_layout"].startswith("image folder")
    assert set(summary["arms"]) == {"baseline", "tpp"} and summary["arms"]["tpp"]["n"] == 1
    written = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["arms"]["tpp"]["mean"] == written["arms"]["tpp"]["mean"] and written["class_names"] == ["cat", "dog"]
    assert "2 classes (cat, dog)" in (tmp_path / "out" / "report.md").read_text()
    board = EventAccumulator(str(tmp_path / "out" / "runs" / "tpp" / "seed0" / "tensorboard")).Reload()
    tags = board.Tags()["scalars"]
    assert {"pretext/train_loss", "pretext/lr", "finetune/train_loss", "finetune/lr", "finetune/val_auc",
            "finetune/val_loss"} <= set(tags)
    lines = [json.loads(t) for t in (tmp_path / "out" / "runs" / "tpp" / "seed0" / "metrics.jsonl").read_text()
             .splitlines() if "epoch" in t and '"event"' not in t]
    logged = [e.value for e in board.Scalars("finetune/val_auc")]
    assert logged == pytest.approx([line["val"]["auc"] for line in lines if line["stage"] == "finetune"])
    assert [e.step for e in board.Scalars("pretext/lr")] == [1, 2]
    assert board.Scalars("pretext/lr")[-1].value < board.Scalars("pretext/lr")[0].value  # cosine decay
    with pytest.raises(OutputError):
        tppeft.run(config, output=tmp_path / "out", log=lambda s: None)
    with pytest.raises(ConfigError, match="finetune.epoch"):
        tppeft.run(config, output=tmp_path / "other", overrides={"finetune.epoch": 3})
    assert not (tmp_path / "other").exists()


def test_tensorboard_missing_is_a_clear_error_before_anything_runs(tmp_path, monkeypatch, capsys):
    import importlib.util

    from tppeft.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    assert main(["run", "-o", str(tmp_path / "out"), "--set", "log.tensorboard=true"]) == 2
    assert "log.tensorboard needs the tensorboard package" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_pretrain_returns_a_peft_model_with_trained_targets_and_leaves_the_input_alone(images, pretrained):
    model, history = pretrained
    assert isinstance(model, PeftModel)
    assert [h["epoch"] for h in history] == [1, 2] and history[1]["train_loss"] < history[0]["train_loss"]
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert any(float(p.detach().abs().max()) > 0 for n, p in trainable.items() if "lora_B" in n)  # B starts at 0
    # the same images as a Dataset of (image, label) pairs and as a DataLoader give the same stage
    x, y = images
    for source in (TensorDataset(x, y), DataLoader(TensorDataset(x, y), batch_size=5)):
        assert tppeft.pretrain("bundled:b0", source, epochs=2, **SMALL)[1] == history


def test_a_users_timm_vit_is_copied_not_changed(images):
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, num_classes=3)
    before = {k: v.clone() for k, v in vit.state_dict().items()}
    model, history = tppeft.pretrain(vit, images[0], method="ia3", pretext="simclr", epochs=1, batch_size=8)
    assert isinstance(model, PeftModel) and len(history) == 1
    assert vit.num_classes == 3 and all(torch.equal(before[k], v) for k, v in vit.state_dict().items())
    assert all(p.requires_grad for p in vit.parameters())
    adapter, _ = tppeft.pretrain(vit, images[0], method="adapter", epochs=1, batch_size=8)
    assert not isinstance(adapter, PeftModel) and any(p.requires_grad for p in adapter.parameters())


def test_finetune_and_evaluate(images, pretrained):
    model, _ = pretrained
    x, y = images
    targets = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    clf, history = tppeft.finetune(model, {"train": (x[:16], y[:16]), "val": (x[16:], y[16:])}, epochs=3,
                                   **SMALL)
    assert [h["epoch"] for h in history] == [1, 2, 3] and set(history[0]["val"]) == {"acc", "auc", "loss"}
    assert all(torch.equal(p, targets[n]) for n, p in model.named_parameters() if p.requires_grad)  # a copy trained
    scores = tppeft.evaluate(clf, (x, y))
    assert set(scores) == {"acc", "auc", "loss"} and 0 <= scores["auc"] <= 1
    assert tppeft.evaluate(clf, {"test": (x[16:], y[16:])}) == pytest.approx(tppeft.evaluate(clf, (x[16:], y[16:])))
    with torch.no_grad():
        assert clf(torch.zeros(2, 3, 32, 32)).shape == (2, 2)


def test_tpp_with_no_pretext_epochs_fine_tunes_exactly_as_plain_peft(images):
    """The API's two paths agree with each other as the comparison's arms do."""
    x, y = images
    data = (x, y)  # val drawn from train, stratified
    zero, _ = tppeft.pretrain("bundled:b0", x, epochs=0, **SMALL)
    _, tpp = tppeft.finetune(zero, data, epochs=2, **SMALL)
    _, plain = tppeft.finetune("bundled:b0", data, method="lora", epochs=2, **SMALL)
    assert tpp == plain


def test_a_users_own_peft_model_trains_its_adapters(images):
    from peft import LoraConfig, get_peft_model

    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, num_classes=0)
    own = get_peft_model(vit, LoraConfig(r=4, target_modules=["qkv"]))
    clf, history = tppeft.finetune(own, images, epochs=1, batch_size=8)
    assert len(history) == 1 and set(tppeft.evaluate(clf, images)) == {"acc", "auc", "loss"}


def test_bad_calls_are_clear(images):
    x, y = images
    with pytest.raises(DataError, match="not normalised"):
        tppeft.pretrain("bundled:b0", x * 2 - 1, epochs=1)
    with pytest.raises(ConfigError, match="unknown option 'rank'"):
        tppeft.pretrain("bundled:b0", x, epochs=1, rank=4)
    for key, value in (("data", [{"path": "more.npz"}]), ("limit", 8), ("path", "scans")):  # ignored, else
        with pytest.raises(ConfigError, match=f"option '{key}' is about reading data files"):
            tppeft.pretrain("bundled:b0", x, epochs=1, **{key: value})
    with pytest.raises(ValueError, match="method="):
        tppeft.finetune(timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8), (x, y))
    with pytest.raises(DataError, match=r"\(4,\) labels for 24 images"):
        tppeft.finetune("bundled:b0", (x, y[:4]), method="lora")
    with pytest.raises(ValueError, match="tppeft.finetune"):
        tppeft.evaluate(timm.create_model("vit_tiny_patch16_224"), (x, y))


def test_load_data_reads_every_layout(tmp_path):
    root = write_image_folder(tmp_path / "flat", counts=(10, 0, 0), splits=False)
    data = tppeft.load_data(root, split={"val": 0.2, "test": 0.2})
    assert data.class_names == ["cat", "dog"] and [len(data[s]) for s in ("train", "val", "test")] == [12, 4, 4]
    assert tppeft.load_data("bundled:breastmnist", limit=5).num_classes == 2
