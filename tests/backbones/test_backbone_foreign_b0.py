"""The proof that an imported decoder is scored in the order it predicts: b0 written in Hugging Face's ViT-MAE
layout and in MAE's .pth layout (both predict (row, column, channel) patches, the tool's own layout (channel,
row, column)) gives the held-out pretext loss, TPP stage and test metrics of the bundled b0.

The layouts cannot hold one thing of b0's: its decoder's final LayerNorm eps 1e-5 (ViTMAE has one
``layer_norm_eps`` for everything, MAE's code 1e-6 everywhere; b0's blocks use 1e-6 too), so the numbers agree to
float tolerance, not bit for bit."""

import json
import math

import pytest

from tppeft.backbones.catalog import write_foreign
from tppeft.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")
# b0's own 64 px, so `pretext.decoder: auto` takes the checkpoint's decoder; one seed, one TPP arm
RUN = ["pretext.probe=false", "seeds=1", "arms=[tpp]", "data.limit=32", "data.image_size=64", "pretext.epochs=1",
       "finetune.epochs=1", "pretext.batch_size=16", "finetune.batch_size=16", "peft.targets=[qkv]", "threads=1"]
# what the .pth cannot say: b0's decoder heads and normalisation
PTH_KEYS = ["backbone.decoder_heads=4", "backbone.mean=[0.5,0.5,0.5]", "backbone.std=[0.5,0.5,0.5]"]


def run(tmp_path, name: str, sets: list[str]) -> dict:
    out = tmp_path / name
    assert main(["run", "-o", str(out), *[a for s in RUN + sets for a in ("--set", s)]]) == 0
    (record,) = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    summary = json.loads((out / "summary.json").read_text())
    # summary.json and the report say where the pretext head came from
    assert summary["arms"]["tpp"]["pretext_head"] == record["pretext"]["head"]
    assert f"Pretext heads: `tpp` {record['pretext']['head']}" in (out / "report.md").read_text()
    return record


def test_b0_in_hf_and_mae_layouts_gives_b0s_numbers(tmp_path, b0):
    hf_dir = write_foreign(b0, "hf:vit_mae", tmp_path / "b0-hf")
    pth = write_foreign(b0, "mae-pth", tmp_path / "b0.pth")
    native = run(tmp_path, "native", [])
    assert native["pretext"]["decoder"] == "pretrained"
    for name, sets, origin in (("hf", [f"backbone.checkpoint={hf_dir}"], "Hugging Face ViTMAEForPreTraining"),
                               ("pth", [f"backbone.checkpoint={pth}", *PTH_KEYS], "MAE decoder of b0.pth")):
        other = run(tmp_path, name, sets)
        assert origin in other["pretext"]["head"] and other["pretext"]["decoder"] == "pretrained"
        for key in ("loss_start", "loss_end"):
            assert math.isclose(other["pretext"][key], native["pretext"][key], rel_tol=1e-5), (name, key)
        for got, want in zip(other["pretext"]["train_loss_curve"], native["pretext"]["train_loss_curve"], strict=True):
            assert math.isclose(got, want, rel_tol=1e-5), name
        for metric, want in native["test"].items():
            assert math.isclose(other["test"][metric], want, rel_tol=1e-4, abs_tol=1e-5), (name, metric)
