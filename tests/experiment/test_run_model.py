"""The run model's check of the frozen backbone: the run record states what the comparison of weights found,
and a change of the frozen weights or of the shared template is an error naming which."""

import pytest
import torch

import tppeft.experiment.comparison as comparison
from tppeft.config import load_config
from tppeft.experiment.context import prepare_context
from tppeft.experiment.model import BackboneChangedError, backbone_unchanged, build_run_model

SMALL = ["seeds=1", "data.limit=16", "data.image_size=32", "peft.targets=[qkv]", "threads=1", "arms=[baseline]"]
RECORD = {"test": {"auc": 0.5}, "val": {"auc": 0.5}, "best_epoch": 1, "seconds": 0.0}


@pytest.fixture(scope="module")
def ctx():
    return prepare_context(load_config(None, SMALL), log=lambda s: None)


def fake_finetune(change):
    """A fine-tuning stage that trains nothing and applies ``change(ctx, run)`` to the weights."""
    def stage(ctx, run, seed, out_dir, tag, epochs=None):
        with torch.no_grad():
            change(ctx, run)
        return dict(RECORD)
    return stage


def test_the_record_states_the_comparison_of_weights(ctx, tmp_path, monkeypatch):
    monkeypatch.setattr(comparison, "finetune_stage", fake_finetune(lambda ctx, run: None))
    found = []

    def spy(*args):
        found.append(backbone_unchanged(*args))
        return found[-1]
    monkeypatch.setattr(comparison, "backbone_unchanged", spy)
    record = comparison.run_arm(ctx, "baseline", 0, tmp_path / "r")
    assert found == [True] and record["backbone_unchanged"] is True


def test_a_changed_frozen_weight_is_an_error(ctx, tmp_path, monkeypatch):
    def change(ctx, run):
        run.vit.blocks[0].mlp.fc1.weight[0, 0] += 1  # frozen: not a target of LoRA on qkv
    monkeypatch.setattr(comparison, "finetune_stage", fake_finetune(change))
    with pytest.raises(BackboneChangedError, match=r"^\[baseline seed 0\]: frozen backbone weights changed"):
        comparison.run_arm(ctx, "baseline", 0, tmp_path / "r")


def test_a_changed_template_is_an_error(ctx, tmp_path, monkeypatch):
    weight = ctx.backbone.model.blocks[0].mlp.fc1.weight
    before = weight.detach().clone()

    def change(ctx, run):
        weight[0, 0] += 1
    monkeypatch.setattr(comparison, "finetune_stage", fake_finetune(change))
    try:
        with pytest.raises(BackboneChangedError, match="the shared backbone template changed"):
            comparison.run_arm(ctx, "baseline", 0, tmp_path / "r")
    finally:
        with torch.no_grad():
            weight.copy_(before)
    run = build_run_model(ctx, 0)
    assert backbone_unchanged(ctx, run, "t") is True  # restored


def test_a_run_that_trains_a_frozen_weight_stops_with_one_line_and_no_summary(tmp_path, monkeypatch, capsys):
    """Fault injection: a method that wrongly lists a backbone weight among its targets (so the optimizer trains
    it) in a real run from the command line; the check itself is left alone."""
    from tppeft.cli import main
    from tppeft.experiment.model import RunModel

    real = RunModel.target_params

    def leaky(self):
        weight = self.vit.blocks[0].mlp.fc1.weight  # frozen: LoRA here is on qkv only
        weight.requires_grad_(True)
        return [*real(self), weight]
    monkeypatch.setattr(RunModel, "target_params", leaky)
    monkeypatch.setattr(RunModel, "target_tensors", lambda self: dict(zip(self.target_names, real(self), strict=True)))
    out = tmp_path / "leak"
    code = main(["run", "-o", str(out), *[a for s in [*SMALL, "finetune.epochs=1", "pretext.probe=false"]
                                          for a in ("--set", s)]])
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 1 and last == "tppeft: error: [baseline seed 0]: frozen backbone weights changed during the run"
    assert not (out / "summary.json").exists()
    results = out / "results.jsonl"
    assert not results.exists() or "backbone_unchanged" not in results.read_text()
