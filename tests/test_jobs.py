"""`tppeft run --jobs N` (and ``tppeft.run(jobs=N)``): the runs of a comparison in N worker processes give the
numbers and the folder of one process; a worker that dies stops the others and the comparison resumes from its
checkpoints."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import tppeft
from tppeft import jobs, ranks
from tppeft.cli import main
from tppeft.faults import ENV
from tppeft.rundir import RunFolder

SETS = ["pretext.probe=false", "data.image_size=32", "threads=1", "seeds=2", "data.limit=16", "pretext.epochs=1",
        "finetune.epochs=1", "pretext.batch_size=8", "finetune.batch_size=8"]
ARGS = [a for s in SETS for a in ("--set", s)]


def _numbers(summary: dict) -> dict:
    runs = {(a, r["seed"]): (r["status"], r["test"], r["best_epoch"], (r["pretext"] or {}).get("loss_end"))
            for a, e in summary["arms"].items() for r in e["runs"]}
    return {"runs": runs, "mean": {a: e["mean"] for a, e in summary["arms"].items()}, "paired": summary["paired"]}


@pytest.fixture(scope="module")
def whole(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("whole") / "run"
    assert main(["run", "-o", str(out), *ARGS]) == 0
    return json.loads((out / "summary.json").read_text())


def test_jobs_give_the_numbers_and_folder_of_one_process(tmp_path, whole, capsys):
    out = tmp_path / "jobs"
    tppeft.run(output=out, overrides=SETS, jobs=2)  # the Python API; the command line is the test below
    err = "".join(capsys.readouterr())
    summary = json.loads((out / "summary.json").read_text())
    assert _numbers(summary) == _numbers(whole)
    assert summary["jobs"] == 2 and summary["figures"] == whole["figures"]
    assert json.loads((out / "command.json").read_text()) == {  # the images a resume must find again
        "command": "run", "jobs": 2, "split_sha256": summary["data"]["split_sha256"]}
    ended = [(r["arm"], r["seed"]) for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())]
    # One line per run, written as each run ended: which of two runs side by side ends first is the machine's
    # business, but with two at a time in the comparison's order the first to end is one of seed 0's.
    assert sorted(ended) == [("baseline", 0), ("baseline", 1), ("tpp", 0), ("tpp", 1)] and ended[0][1] == 0
    assert not (out / jobs.PARTS).exists()
    assert sorted(p.name for p in (out / jobs.LOGS).iterdir()) == [
        "baseline-seed0.log", "baseline-seed1.log", "tpp-seed0.log", "tpp-seed1.log"]
    assert (out / "runs" / "tpp" / "seed1" / "target_params" / "target_params.safetensors").is_file()
    assert not (out / "runs" / "tpp" / "seed1" / "checkpoints").exists()
    assert "[tpp seed 1] TPP stage done" in err  # the workers' progress lines reach the terminal
    assert "done in" in err and "(4/4 runs)" in err
    assert f"wall time {summary['wall_seconds']:.0f} s (2 runs at a time)" in (out / "report.md").read_text()
    assert main(["report", str(out)]) == 0


def test_a_dead_worker_stops_the_comparison_and_resume_finishes_it(tmp_path, whole, capsys, monkeypatch):
    out = tmp_path / "jobs"
    monkeypatch.setenv(ENV, "tpp-stage-done")  # every worker making a TPP run kills itself after its TPP stage
    assert main(["run", "-o", str(out), *ARGS, "--jobs", "2"]) == 1
    err = capsys.readouterr().err
    assert "error: run tpp seed 0 was killed by SIGKILL; its log:" in err and "kill point tpp-stage-done" in err
    assert f"resume with: tppeft run --resume {out}" in err
    assert (out / jobs.PARTS / "tpp-seed0" / "config.yaml").is_file() and not (out / "summary.json").exists()
    monkeypatch.delenv(ENV)
    assert main(["run", "--resume", str(out)]) == 0  # --jobs 2 from the folder's command.json
    err = capsys.readouterr().err
    assert "[tpp seed 0] resuming its part" in err
    summary = json.loads((out / "summary.json").read_text())
    assert _numbers(summary) == _numbers(whole) and summary["resumed"] is True
    assert not (out / jobs.PARTS).exists()
    wall = f"wall time {summary['wall_seconds']:.0f} s since it was last resumed (2 runs at a time)"
    assert wall in (out / "report.md").read_text()  # not the whole comparison's time
    own = sum(r["seconds"] for e in summary["arms"].values() for r in e["runs"])
    assert f"the runs' own times, across the interruptions, add up to {own:.0f} s" in (out / "report.md").read_text()


def test_jobs_refusals(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["run", "-o", str(tmp_path / "a"), *ARGS, "--jobs", "0"])
    assert "at least 1" in capsys.readouterr().err


def test_a_comparison_one_process_started_continues_in_workers(tmp_path, whole, capsys):
    """One process killed after tpp seed 0's TPP stage (baseline seed 0 finished); resumed with --jobs 2, the
    started run continues from its stage checkpoint in a worker, and the numbers are one process's."""
    out = tmp_path / "one"
    env = {**os.environ, ENV: "tpp-stage-done", "PYTHONPATH": str(Path(tppeft.__file__).parents[1])}
    done = subprocess.run([sys.executable, "-m", "tppeft", "run", "-o", str(out), *ARGS], env=env,
                          capture_output=True, text=True)
    assert done.returncode == -signal.SIGKILL and "kill point tpp-stage-done" in done.stderr, done.stderr
    assert [json.loads(x)["arm"] for x in (out / "results.jsonl").read_text().splitlines()] == ["baseline"]
    assert main(["run", "--resume", str(out), "--jobs", "2"]) == 0
    err = capsys.readouterr().err
    assert f"{out} was made by one process: its runs continue in 2 worker processes" in err
    assert "[tpp seed 0] resuming its part" in err and "[tpp seed 0] TPP stage already done" in err
    assert "[baseline seed 0] finetune epoch" not in err  # the finished run is kept
    summary = json.loads((out / "summary.json").read_text())
    assert _numbers(summary) == _numbers(whole) and summary["jobs"] == 2
    assert json.loads((out / "command.json").read_text())["jobs"] == 2  # a later resume uses workers too
    assert not (out / jobs.PARTS).exists() and (out / "runs" / "tpp" / "seed0" / "target_params").is_dir()


def test_worker_threads_share_the_cores(monkeypatch):
    monkeypatch.setattr(ranks, "cores", lambda: 8)
    assert jobs.worker_threads(None, 2) == 4 and jobs.worker_threads(None, 16) == 1
    assert jobs.worker_threads(3, 2) == 3  # threads set in the config win


def test_a_run_that_would_wait_for_the_shared_stage_gives_way_to_one_that_would_not(tmp_path):
    from types import SimpleNamespace

    import torch

    from tppeft.config import load_config
    from tppeft.engine.checkpoint import newest_done, write_checkpoint

    folder = RunFolder(tmp_path)
    stage = folder.runs_root / "tpp" / "stage" / "checkpoints" / "pretext"
    todo = [("tpp", 1), ("baseline_matched", 1), ("baseline", 2)]
    shared, per_seed = load_config(None, ["pretext.stage_seed=0"]), load_config(None, [])
    making, other = [SimpleNamespace(arm="tpp")], [SimpleNamespace(arm="baseline")]
    assert jobs._next_run(shared, folder, todo, making) == 1  # tpp seed 0 is making the stage
    assert jobs._next_run(shared, folder, todo, other) == 0  # no one makes it: this run will
    assert jobs._next_run(per_seed, folder, todo, making) == 0  # a stage per run: nothing to wait for
    assert jobs._next_run(shared, folder, [("tpp", 1), ("tpp", 2)], making) == 0  # no run would not wait
    stage.mkdir(parents=True)
    write_checkpoint(stage / "ckpt-000001.safetensors", {"x": torch.zeros(1)}, {"done": False})
    assert not newest_done(stage) and jobs._next_run(shared, folder, todo, making) == 1  # part-way
    write_checkpoint(stage / "ckpt-000002.safetensors", {"x": torch.zeros(1)}, {"done": True})
    assert newest_done(stage) and jobs._next_run(shared, folder, todo, making) == 0  # made: read it at once
    (stage / "ckpt-000003.safetensors").write_bytes(b"half-written")
    assert not newest_done(stage)


def test_a_workers_messages_name_the_comparison_to_resume(monkeypatch, tmp_path):
    from argparse import Namespace

    from tppeft.cli import _resume_hint
    from tppeft.rundir import JOBS_FOLDER_ENV

    args = Namespace(command="run", out_dir=tmp_path / "parts" / "tpp-seed0")
    assert _resume_hint(args).endswith(f"tppeft run --resume {tmp_path / 'parts' / 'tpp-seed0'}")
    monkeypatch.setenv(JOBS_FOLDER_ENV, str(tmp_path))
    assert _resume_hint(args) == f"; resume the comparison with: tppeft run --resume {tmp_path}"


def test_redo_removes_the_runs_parts_and_logs_only(tmp_path):
    folder = RunFolder(tmp_path)
    for arm, seed in (("tpp", 0), ("tpp", 1)):
        (jobs.part_folder(folder, arm, seed).root / "runs").mkdir(parents=True)
        for finished in (False, True):
            path = jobs.log_path(folder, arm, seed, finished)
            path.parent.mkdir(exist_ok=True)
            path.write_text("old log\n")
    jobs.forget_parts(folder, {("tpp", 0)})
    assert not jobs.part_folder(folder, "tpp", 0).root.exists()
    assert not any(jobs.log_path(folder, "tpp", 0, f).exists() for f in (False, True))
    assert jobs.part_folder(folder, "tpp", 1).root.is_dir()
    assert all(jobs.log_path(folder, "tpp", 1, f).is_file() for f in (False, True))
