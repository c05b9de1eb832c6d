"""Every method through both stages and through `tppeft run`, on a tiny budget of real data."""

import dataclasses
import json

import pytest
import torch
from conftest import tiny_config
from test_targets_methods import METHODS

from tppeft.cli import main
from tppeft.config import PeftConfig
from tppeft.experiment.context import prepare_context
from tppeft.experiment.finetune_stage import finetune_stage
from tppeft.experiment.model import build_run_model
from tppeft.experiment.pretext_stage import pretrain_stage
from tppeft.targets.base import META_FILE

# Tiny: 16 images per split (both classes present), one step per stage at batch 16, 32 px input (16 patches;
# b0's position embedding resampled by timm, a fresh MAE decoder).
TINY = ["data.limit=16", "data.image_size=32"]


@pytest.fixture(scope="module")
def ctx():
    cfg, _ = tiny_config(**dict(s.split("=") for s in TINY))
    return prepare_context(cfg, log=lambda s: None)


@pytest.mark.parametrize("method", METHODS)
def test_backbone_is_unchanged_after_tpp_and_finetuning(ctx, method, tmp_path):
    """Only the target tensors may change (BitFit / LayerNorm: the selected backbone tensors themselves)."""
    c = dataclasses.replace(ctx, cfg=ctx.cfg.model_copy(update={"peft": PeftConfig(method=method)}))
    template = {k: v.clone() for k, v in ctx.backbone.model.state_dict().items()}
    run = build_run_model(c, seed=0)
    targets = set(run.target_names)
    frozen_before = {k: v.clone() for k, v in run.vit.state_dict().items() if k not in targets}
    t0 = [p.detach().clone() for p in run.target_params()]
    pretrain_stage(c, run, 0, tmp_path, "t")
    t1 = [p.detach().clone() for p in run.target_params()]
    finetune_stage(c, run, 0, tmp_path, "t")
    frozen_after = {k: v for k, v in run.vit.state_dict().items() if k not in targets}
    assert frozen_before.keys() == frozen_after.keys()
    assert all(torch.equal(frozen_before[k], frozen_after[k]) for k in frozen_before)
    assert all(torch.equal(template[k], v) for k, v in ctx.backbone.model.state_dict().items())
    assert run.frozen_unchanged()
    # the target parameters did train in both stages
    assert any(not torch.equal(a, b) for a, b in zip(t0, t1, strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(t1, run.target_params(), strict=True))
    saved = json.loads((tmp_path / "target_params" / META_FILE).read_text())
    assert saved["method"] == method and (tmp_path / "finetuned" / "head.safetensors").is_file()


@pytest.mark.parametrize("method", METHODS)
def test_two_arm_run_completes_for_every_method(ctx, method, tmp_path, capsys):
    sets = [*tiny_config()[1], *TINY, "seeds=1", f"peft.method={method}"]
    out = tmp_path / "run"
    assert main(["run", "-o", str(out), *[a for s in sets for a in ("--set", s)]]) == 0
    summary = json.loads((out / "summary.json").read_text())
    tp = summary["target_params"]
    assert tp["method"] == method and tp["count"] > 0 and 0 < tp["percent"] < 100
    assert tp["backbone_params"] == sum(p.numel() for p in ctx.backbone.model.parameters())  # whichever method
    for arm in ("baseline", "tpp"):
        (record,) = summary["arms"][arm]["runs"]
        assert record["backbone_unchanged"] and record["target_params"] == tp["count"]
    assert "target parameters" in capsys.readouterr().err  # count and percentage printed at the start
    assert f"`{method}`" in (out / "report.md").read_text()
