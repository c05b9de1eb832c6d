import math

import pytest
import torch

from tppeft.engine.loop import NonFiniteLossError, train, warmup_cosine
from tppeft.io import write_json
from tppeft.reporting.stats import bootstrap_ci, mean_std, paired_difference
from tppeft.rundir import OutputError, RunFolder


def test_mean_std_and_bootstrap():
    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)
    assert mean_std([5.0]) == (5.0, 0.0)
    lo, hi = bootstrap_ci([0.1, 0.2, 0.3, 0.4])
    assert 0.1 <= lo < 0.25 < hi <= 0.4
    assert bootstrap_ci([0.5, 0.5]) == (0.5, 0.5)


def test_paired_difference_counts_wins_over_shared_seeds():
    d = paired_difference({0: 0.8, 1: 0.7, 2: 0.9, 3: 0.5}, {0: 0.7, 1: 0.75, 2: 0.85})
    assert d["n"] == 3 and d["wins"] == 2
    assert d["mean"] == pytest.approx((0.1 - 0.05 + 0.05) / 3)


def test_warmup_cosine_schedule():
    assert warmup_cosine(0, 100, 10) == pytest.approx(0.1)
    assert warmup_cosine(9, 100, 10) == pytest.approx(1.0)
    assert warmup_cosine(10, 100, 10) == pytest.approx(1.0)
    assert warmup_cosine(100, 100, 10) == pytest.approx(0.0)


def test_train_fits_a_line_and_stops_on_nan():
    torch.manual_seed(0)
    x, w = torch.randn(64, 3), torch.tensor([1.0, -2.0, 0.5])
    y = x @ w
    p = torch.nn.Parameter(torch.zeros(3))
    res = train([p], lambda idx: ((x[idx] @ p - y[idx]) ** 2).mean(), 64, epochs=30, batch_size=16, lr=0.1,
                weight_decay=0, warmup_epochs=1, generator=torch.Generator().manual_seed(0), log=lambda s: None)
    assert res.history[-1]["train_loss"] < 0.01 * res.history[0]["train_loss"] and res.steps == 120
    q = torch.nn.Parameter(torch.zeros(1))
    with pytest.raises(NonFiniteLossError, match="epoch 1"):
        train([q], lambda idx: q.sum() * math.nan, 8, epochs=2, batch_size=4, lr=0.1, weight_decay=0,
              warmup_epochs=0, generator=torch.Generator(), log=lambda s: None)


def test_output_folder_rules(tmp_path):
    out = RunFolder(tmp_path / "a").prepare(overwrite=False).root
    (out / "config.yaml").write_text("x")
    with pytest.raises(OutputError, match="--overwrite"):
        RunFolder(out).prepare(overwrite=False)
    assert not (RunFolder(out).prepare(overwrite=True).root / "config.yaml").exists()
    other = tmp_path / "b"
    other.mkdir()
    (other / "precious.txt").write_text("x")
    with pytest.raises(OutputError, match="refusing"):
        RunFolder(other).prepare(overwrite=True)
    write_json(tmp_path / "n.json", {"a": float("nan")})
    assert (tmp_path / "n.json").read_text().strip() == '{\n "a": null\n}'


def test_a_long_epoch_logs_its_progress(monkeypatch):
    import tppeft.engine.loop as loop

    x = torch.randn(16, 2)
    p = torch.nn.Parameter(torch.zeros(2))
    lines: list[str] = []
    monkeypatch.setattr(loop, "PROGRESS_SECONDS", 0.0)  # every step is "long enough ago"
    train([p], lambda idx: ((x[idx] @ p - 1) ** 2).mean(), 16, epochs=2, batch_size=4, lr=0.1, weight_decay=0,
          warmup_epochs=0, generator=torch.Generator().manual_seed(0), log=lines.append, tag="[t]")
    steps = [line.split(" loss ")[0] for line in lines if " step " in line]
    assert steps == [f"[t] epoch {e}/2 step {k}/4" for e in (1, 2) for k in (1, 2, 3)]  # the epoch's end logs itself
    assert all("eta" in line for line in lines)
    monkeypatch.setattr(loop, "PROGRESS_SECONDS", 3600.0)
    lines.clear()
    train([p], lambda idx: ((x[idx] @ p - 1) ** 2).mean(), 16, epochs=1, batch_size=4, lr=0.1, weight_decay=0,
          warmup_epochs=0, generator=torch.Generator().manual_seed(0), log=lines.append, tag="[t]")
    assert not any(" step " in line for line in lines)
    # epochs shorter than the interval print no progress lines, however long the stage (an epoch's line counts)
    clock = iter(range(0, 10_000, 7))  # each reading of the clock is 7 s after the last
    monkeypatch.setattr(loop, "PROGRESS_SECONDS", 60.0)
    monkeypatch.setattr(loop.time, "perf_counter", lambda: float(next(clock)))
    lines.clear()
    train([p], lambda idx: ((x[idx] @ p - 1) ** 2).mean(), 16, epochs=6, batch_size=4, lr=0.1, weight_decay=0,
          warmup_epochs=0, generator=torch.Generator().manual_seed(0), log=lines.append, tag="[t]")
    assert len(lines) == 6 and not any(" step " in line for line in lines)
