"""Precision, compilation and the loop's device-side bookkeeping (engine/devices.py, engine/loop.py)."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import tiny_config

import tppeft.experiment.finetune_stage as finetune_stage_mod
import tppeft.experiment.pretext_stage as pretext_stage_mod
from tppeft.cli import main
from tppeft.engine.devices import autocast, autocast_dtype, compile_blocks
from tppeft.engine.loop import NonFiniteLossError, train
from tppeft.experiment.context import prepare_context
from tppeft.experiment.model import build_run_model


@pytest.mark.parametrize("precision,device,supported,expected", [
    ("auto", "cuda", True, torch.bfloat16),
    ("auto", "cuda", False, None),  # a GPU without bf16 stays in float32
    ("auto", "cpu", True, None),  # CPU: float32, bf16 is far slower there
    ("fp32", "cuda", True, None),
    ("bf16", "cpu", False, torch.bfloat16),  # asked for explicitly: obeyed
])
def test_precision_decision(precision, device, supported, expected):
    assert autocast_dtype(precision, torch.device(device), bf16_supported=supported) is expected


def test_bf16_autocast_trains_in_float32_weights(one_thread):
    """Under bf16 autocast the forward's matrix products run in bf16; weights, grads and the loss stay float32,
    and the loop still fits a line."""
    torch.manual_seed(0)
    x, w = torch.randn(64, 3), torch.tensor([1.0, -2.0, 0.5])
    y = x @ w
    p = torch.nn.Parameter(torch.zeros(3))
    seen = []

    def step(idx):
        out = x[idx] @ p
        seen.append(out.dtype)
        return ((out.float() - y[idx]) ** 2).mean()

    res = train([p], step, 64, epochs=20, batch_size=16, lr=0.1, weight_decay=0, warmup_epochs=1,
                generator=torch.Generator().manual_seed(0), log=lambda s: None, precision=torch.bfloat16)
    assert set(seen) == {torch.bfloat16} and p.dtype == torch.float32
    assert res.history[-1]["train_loss"] < 0.05 * res.history[0]["train_loss"]
    with autocast(torch.device("cpu"), None):
        assert (x @ p).dtype == torch.float32


def test_compile_blocks_in_place_keeps_names_and_outputs(one_thread):
    ctx = prepare_context(tiny_config()[0], log=lambda s: None)
    run = build_run_model(ctx, 0)
    x = ctx.batch("val", torch.arange(4))
    with torch.no_grad():
        eager = run.vit(x)
    keys = list(run.vit.state_dict())
    assert compile_blocks(run.vit, backend="eager") == len(run.vit.blocks)
    assert all(b._compiled_call_impl is not None for b in run.vit.blocks)
    assert list(run.vit.state_dict()) == keys and run.target_names[0] in dict(run.vit.named_parameters())
    with torch.no_grad():
        assert torch.equal(run.vit(x), eager)


def test_config_selects_precision_and_compile(tmp_path, monkeypatch, one_thread):
    """train.precision reaches the context; train.compile compiles the blocks of both stages (with torch's eager
    backend here, which runs the captured graphs as they are: the numbers equal an uncompiled run)."""
    bf16 = prepare_context(tiny_config(**{"train.precision": "bf16"})[0], log=lambda s: None)
    assert bf16.precision is torch.bfloat16
    assert prepare_context(tiny_config()[0], log=lambda s: None).precision is None
    sets = ["pretext.probe=false", "threads=1", "seeds=1", "data.limit=16", "pretext.epochs=1", "finetune.epochs=1",
            "pretext.batch_size=8", "finetune.batch_size=8"]
    args = [a for s in sets for a in ("--set", s)]
    assert main(["run", "-o", str(tmp_path / "plain"), *args]) == 0
    counted = []

    def eager_compile(module):
        counted.append(compile_blocks(module, backend="eager"))
        return counted[-1]

    monkeypatch.setattr(pretext_stage_mod, "compile_blocks", eager_compile)
    monkeypatch.setattr(finetune_stage_mod, "compile_blocks", eager_compile)
    assert main(["run", "-o", str(tmp_path / "compiled"), *args, "--set", "train.compile=true"]) == 0
    assert counted and all(c > 0 for c in counted)
    plain, compiled = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("plain", "compiled"))
    for arm in ("baseline", "tpp"):
        assert compiled["arms"][arm]["runs"][0]["test"] == pytest.approx(plain["arms"][arm]["runs"][0]["test"],
                                                                         abs=1e-6)


@pytest.mark.parametrize("on_nonfinite", ["stop", "skip"])
def test_nonfinite_is_caught_without_reading_the_loss_every_step(on_nonfinite, monkeypatch):
    """In ``stop`` mode the loop reads no device value during an epoch (the flag is read at its end); a NaN
    never reaches the recorded loss in either mode."""
    reads = []
    real = torch.Tensor.__bool__

    def spy(self):
        reads.append(1)
        return real(self)

    q = torch.nn.Parameter(torch.ones(1))
    calls = {"n": 0}

    def step(idx):
        calls["n"] += 1
        return (q * (float("nan") if calls["n"] == 3 else 1.0)).sum() ** 2

    monkeypatch.setattr(torch.Tensor, "__bool__", spy)
    if on_nonfinite == "stop":
        with pytest.raises(NonFiniteLossError, match="non-finite"):
            train([q], step, 16, epochs=1, batch_size=2, lr=0.1, weight_decay=0, warmup_epochs=0,
                  generator=torch.Generator(), log=lambda s: None)
        assert len(reads) <= 1  # the one read at the epoch's end
    else:
        res = train([q], step, 16, epochs=1, batch_size=2, lr=0.1, weight_decay=0, warmup_epochs=0,
                    generator=torch.Generator(), log=lambda s: None, on_nonfinite="skip")
        assert res.skipped_steps == 1 and res.history[0]["train_loss"] == res.history[0]["train_loss"]
