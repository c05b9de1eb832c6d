"""Fault injection through the command line: crashes and kills at random points of both stages, SIGTERM,
a full disk, a run whose loss goes NaN. Every interrupted comparison, resumed, must end with exactly the
numbers and files of an uninterrupted one (CPU)."""

from __future__ import annotations

import hashlib
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import wait_for, write_medmnist, write_segmentation_npz

import tppeft.engine.checkpoint as checkpoint_mod
import tppeft.engine.loop as loop_mod
import tppeft.experiment.comparison as comparison_mod
import tppeft.experiment.finetune_stage as finetune_stage_mod
import tppeft.experiment.pretext_stage as pretext_stage_mod
import tppeft.io as io_mod
from tppeft.cli import main
from tppeft.rundir import comparable_outputs
from tppeft.tasks.classification import ClassificationTask

SRC = Path(__file__).resolve().parents[1] / "src"
# One seed, both arms: 2 TPP epochs and 2 fine-tuning epochs of 2 steps each, a checkpoint after every step.
SETS = ["pretext.probe=false", "data.image_size=32", "threads=1",
        "seeds=1", "data.limit=16", "pretext.epochs=2", "finetune.epochs=2",
        "pretext.batch_size=8", "finetune.batch_size=8", "checkpoint.every_steps=1"]
ARGS = [a for s in SETS for a in ("--set", s)]


def comparable(out: Path) -> dict:
    """Everything a run produced that must not depend on interruptions (timings removed), and its summary."""
    result = comparable_outputs(out)
    summary = json.loads((out / "summary.json").read_text())
    result["summary"] = {arm: (e["mean"], e["std"], e["n"]) for arm, e in summary["arms"].items()}
    return result


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """The uninterrupted run, and how many injection events it passes through."""
    out = tmp_path_factory.mktemp("ref") / "run"
    with pytest.MonkeyPatch.context() as mp:
        counter = Injector(mp)
        assert main(["run", "-o", str(out), *ARGS]) == 0
    assert not list(out.glob("runs/*/seed*/checkpoints"))  # deleted once each run is recorded
    return {"files": comparable(out), "events": counter.count}


class Crash(BaseException):
    """Stands for SIGKILL: raised at an injection point, caught by nothing in tppeft."""


class Injector:
    """Counts events (training steps, evaluations, metrics lines, file writes) and crashes at event ``at``.

    A crash inside a write leaves what a kill would: half a temporary file, or half a JSON line.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch, at: int | None = None, only: str = ""):
        self.count, self.at, self.where = 0, at, None
        grads, evaluate = loop_mod._grads_finite, ClassificationTask.evaluate
        write, append = io_mod.atomic_write_bytes, comparison_mod.append_jsonl

        def hit(name: str) -> bool:
            if not name.startswith(only):
                return False
            self.count += 1
            if self.count == self.at:
                self.where = name
                return True
            return False

        def step(*a):
            if hit("training step"):
                raise Crash
            return grads(*a)

        def ev(*a):
            if hit("evaluation"):
                raise Crash
            return evaluate(*a)

        def atomic(path, data, **kw):
            if hit(f"writing {path.name}"):
                tmp = path.with_name(f".{path.name}.tmp")
                tmp.write_bytes(data[: len(data) // 2])
                raise Crash
            return write(path, data, **kw)

        def line(path, record):
            if hit(f"appending to {path.name}"):
                with open(path, "a") as f:
                    f.write(json.dumps(record)[:20])
                raise Crash
            return append(path, record)

        monkeypatch.setattr(loop_mod, "_grads_finite", step)
        monkeypatch.setattr(ClassificationTask, "evaluate", ev)
        monkeypatch.setattr(io_mod, "atomic_write_bytes", atomic)  # checkpoints and weight files write through it
        for module in (pretext_stage_mod, finetune_stage_mod, comparison_mod):
            monkeypatch.setattr(module, "append_jsonl", line)


def test_crash_at_random_points_then_resume_matches_an_uninterrupted_run(reference, tmp_path, monkeypatch):
    events = reference["events"]
    rng = random.Random(7)
    thirds = [range(1 + i * events // 3, 1 + (i + 1) * events // 3) for i in range(3)]  # baseline, TPP, fine-tuning
    points = [rng.choice(third) for third in thirds]
    survived = []
    for at in points:
        out = tmp_path / f"crash{at}"
        first = Injector(monkeypatch, at)
        with pytest.raises(Crash):
            main(["run", "-o", str(out), *ARGS])
        # the resumed process is killed once more, a little later, in about half of the cases
        again = rng.random() < 0.5
        second = Injector(monkeypatch, rng.randint(1, max(1, events - at)) if again else None)
        try:
            code = main(["run", "--resume", str(out), "--set", "threads=1"])
        except Crash:
            code = None
        if code is None:
            Injector(monkeypatch)
            code = main(["run", "--resume", str(out), "--set", "threads=1"])
        assert code == 0, f"crash at event {at} ({first.where})"
        assert comparable(out) == reference["files"], f"crash at event {at} ({first.where}), then {second.where}"
        survived.append((at, first.where, second.where))
    assert len(survived) == len(points)
    print(f"{events} events; crashed and resumed at {survived}")


def _spawn(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.Popen([sys.executable, "-m", "tppeft", *args], env=env, stderr=subprocess.PIPE, text=True)


def test_sigkill_in_both_stages_then_resume_matches(reference, tmp_path):
    """Real SIGKILLs: one during the TPP stage, one during fine-tuning of the resumed process."""
    out = tmp_path / "killed"
    rng = random.Random(11)
    proc = _spawn(["run", "-o", str(out), *ARGS])
    wait_for(proc, "[tpp seed 0] TPP stage:")
    time.sleep(rng.uniform(0, 0.5))
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    proc = _spawn(["run", "--resume", str(out), "--set", "threads=1"])
    wait_for(proc, "[tpp seed 0] finetune epoch 1/2")
    time.sleep(rng.uniform(0, 0.3))
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert main(["run", "--resume", str(out), "--set", "threads=1"]) == 0  # the last resume runs in this process
    assert comparable(out) == reference["files"]
    (tpp,) = [r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines()) if r["arm"] == "tpp"]
    # the run's seconds count its stages' time before the resumes too, not only the last process's
    assert tpp["seconds"] >= tpp["finetune_seconds"] + tpp["pretext"]["seconds"] - 0.01  # both rounded to 0.01


def test_sigterm_checkpoints_and_says_how_to_resume(reference, tmp_path):
    out = tmp_path / "term"
    proc = _spawn(["run", "-o", str(out), *ARGS])
    wait_for(proc, "[tpp seed 0] pretext epoch 1/2")
    proc.send_signal(signal.SIGTERM)
    rest = proc.stderr.read()
    assert proc.wait() == 128 + signal.SIGTERM
    last = rest.strip().splitlines()[-1]
    assert last.startswith("tppeft: stopped by SIGTERM; checkpoint ") and last.endswith(
        f"resume with: tppeft run --resume {out}"), rest
    assert not (out / "summary.json").exists()
    assert main(["run", "--resume", str(out), "--set", "threads=1"]) == 0
    assert comparable(out) == reference["files"]


@pytest.mark.skipif(not hasattr(resource, "prlimit"), reason="needs Linux's prlimit")
def test_disk_full_mid_run_is_a_clear_error_and_the_run_resumes(reference, tmp_path):
    """Writes start failing the way a full disk makes them fail (a file-size limit set on the running process
    from outside), after the baseline run and a few checkpoints of the TPP stage were written."""
    out = tmp_path / "full"
    limit = 300_000  # below one checkpoint (about 4.7 MB), above every other file of the run
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen([sys.executable, "-m", "tppeft", "run", "-o", str(out), *ARGS], env=env,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGXFSZ, signal.SIG_IGN))
    lines = wait_for(proc, "[tpp seed 0] pretext epoch 1/2")  # the TPP stage's checkpoints 0 and 1 are written
    resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (limit, limit))
    rest = proc.stderr.read()
    assert proc.wait() == 2, rest
    stage = out / "runs/tpp/seed0/checkpoints/pretext"
    last = rest.strip().splitlines()[-1]
    assert last.startswith(f"tppeft: error: cannot write {stage}/ckpt-") and last.endswith(
        f".safetensors: File too large; resume with: tppeft run --resume {out}"), rest
    assert "Traceback" not in rest and sum("error" in x for x in lines + rest.splitlines()) == 1, rest
    assert [json.loads(x)["arm"] for x in (out / "results.jsonl").read_text().splitlines()] == ["baseline"]
    failed = int(last.split("/ckpt-")[1][:6])  # the write that failed: the checkpoints before it are intact
    assert failed >= 2 and sorted(p.name for p in stage.iterdir()) == [
        f"ckpt-{n:06d}.safetensors" for n in (failed - 2, failed - 1)] and not list(out.rglob("*.tmp"))
    steps = [checkpoint_mod.read_checkpoint(p).meta["loop"]["step"] for p in sorted(stage.iterdir())]  # checksums
    assert steps == [failed - 2, failed - 1]  # a checkpoint after every step
    assert main(["run", "--resume", str(out), "--set", "threads=1"]) == 0  # space freed: no limit
    assert comparable(out) == reference["files"]


def test_nan_run_fails_alone_and_is_flagged_not_averaged(tmp_path, monkeypatch, capsys):
    """A loss that goes NaN in one run stops that run (its checkpoints kept); the summary leaves it out."""
    real = loop_mod._grads_finite
    seen = {"n": 0}

    def poisoned(params, loss):
        seen["n"] += 1
        return real(params, loss * float("nan")) if seen["n"] == 9 else real(params, loss)

    monkeypatch.setattr(loop_mod, "_grads_finite", poisoned)
    out = tmp_path / "nan"
    assert main(["run", "-o", str(out), *ARGS]) == 1  # the first tpp fine-tuning step goes bad
    err = capsys.readouterr()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["arms"]["tpp"]["n"] == 0 and summary["arms"]["tpp"]["failed"][0]["seed"] == 0
    assert "non-finite" in summary["arms"]["tpp"]["failed"][0]["error"]
    assert summary["arms"]["tpp"]["mean"]["auc"] is None and summary["arms"]["baseline"]["n"] == 1
    assert "FAILED" in (out / "report.md").read_text() and "1 run(s) failed" in err.err
    assert list((out / "runs/tpp/seed0/checkpoints/finetune").glob("ckpt-*.safetensors"))  # last good one kept
    # with on_nonfinite=skip the same faults are skipped and counted instead
    seen["n"] = 0
    skip = tmp_path / "skip"
    assert main(["run", "-o", str(skip), *ARGS, "--set", "train.on_nonfinite=skip"]) == 0
    summary = json.loads((skip / "summary.json").read_text())
    assert summary["arms"]["tpp"]["n"] == 1 and summary["arms"]["tpp"]["skipped_steps"] == {"0": 1}
    assert "1 update(s) skipped" in (skip / "report.md").read_text()


def test_redo_makes_one_run_again_as_an_uninterrupted_comparison_has_it(reference, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "-o", str(out), *ARGS]) == 0
    results = out / "results.jsonl"
    baseline_line = results.read_text().splitlines()[0]
    shutil.rmtree(out / "runs" / "tpp" / "seed0")  # its folder lost: a plain --resume keeps its results line
    capsys.readouterr()
    assert main(["run", "--resume", str(out), "--redo", "tpp:0"]) == 0
    log = "".join(capsys.readouterr())
    assert "--redo: 1 finished run(s) dropped" in log and log.count("== run ") == 1
    assert results.read_text().splitlines()[0] == baseline_line  # the other run's line untouched
    assert comparable(out) == reference["files"]
    assert json.loads((out / "command.json").read_text())["redone"] == ["tpp:0"]
    assert json.loads((out / "summary.json").read_text())["redone"] == ["tpp:0"]
    assert "made again with `--redo`: tpp:0" in (out / "report.md").read_text()
    # refused, with the folder unchanged: without --resume, and a run the comparison does not have
    assert main(["run", "-o", str(tmp_path / "new"), "--redo", "tpp:0", *ARGS]) == 2
    assert "tppeft run --resume DIR --redo ARM:SEED" in capsys.readouterr().err
    before = results.read_text()
    assert main(["run", "--resume", str(out), "--redo", "tpp:1"]) == 2
    assert "--redo 'tpp:1': expected ARM:SEED" in capsys.readouterr().err
    assert results.read_text() == before and (out / "summary.json").is_file()


def test_resuming_on_other_images_is_refused(tmp_path, capsys):
    data = write_medmnist(tmp_path / "data.npz", n=(16, 8, 8), size=32)
    out = tmp_path / "run"
    assert main(["run", "-o", str(out), *ARGS, "--set", f"data.path={data}", "--set", "arms=[baseline]"]) == 0
    recorded = json.loads((out / "command.json").read_text())["split_sha256"]
    assert recorded == json.loads((out / "summary.json").read_text())["data"]["split_sha256"]
    results = (out / "results.jsonl").read_text()
    write_medmnist(data, n=(16, 8, 8), size=32, seed=1)  # the data file replaced: other pixels, same shapes
    capsys.readouterr()
    assert main(["run", "--resume", str(out)]) == 2
    err = capsys.readouterr().err
    assert "its runs were made on other images" in err and "test, train, val split(s)" in err
    assert (out / "results.jsonl").read_text() == results
    write_medmnist(data, n=(16, 8, 8), size=32)  # restored: the comparison goes on
    assert main(["run", "--resume", str(out)]) == 0


def test_stage_commands_resume_too(tmp_path, monkeypatch, capsys):
    """`tppeft pretrain` and `tppeft finetune` interrupted mid-stage resume to the same files."""
    def digest(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()

    ref, cut = tmp_path / "pre_ref", tmp_path / "pre_cut"
    det = ["--set", "train.deterministic=true", "--seed", "1"]  # torch's deterministic kernels work on CPU too
    assert main(["pretrain", "-o", str(ref), *ARGS, *det]) == 0
    Injector(monkeypatch, at=3, only="training step")  # the TPP stage's first step of epoch 2
    with pytest.raises(Crash):
        main(["pretrain", "-o", str(cut), *ARGS, *det])
    Injector(monkeypatch)
    assert main(["run", "--resume", str(cut)]) == 2
    assert f"holds a 'pretrain' run; resume it with tppeft pretrain --resume {cut}" in capsys.readouterr().err
    assert main(["pretrain", "--resume", str(cut)]) == 0
    weights = "target_params/adapter_model.safetensors"
    assert digest(cut / weights) == digest(ref / weights)
    assert json.loads((cut / "pretext.json").read_text())["seed"] == 1

    ft_ref, ft_cut = tmp_path / "ft_ref", tmp_path / "ft_cut"
    assert main(["finetune", "-o", str(ft_ref), "--init", str(ref), *ARGS]) == 0
    Injector(monkeypatch, at=2, only="training step")  # the fine-tuning's second step
    with pytest.raises(Crash):
        main(["finetune", "-o", str(ft_cut), "--init", str(ref), *ARGS])
    Injector(monkeypatch)
    assert main(["finetune", "--resume", str(ft_cut)]) == 0
    strip = [{k: v for k, v in json.loads(p.read_text()).items() if k != "seconds"} for p in
             (ft_ref / "results.jsonl", ft_cut / "results.jsonl")]
    assert strip[0] == strip[1] and digest(ft_cut / "finetuned/head.safetensors") == digest(
        ft_ref / "finetuned/head.safetensors")


def test_a_scheduled_dino_stage_resumes_where_its_schedule_stopped(tmp_path, monkeypatch):
    """DINO's schedules run by the stage's step, which the checkpoint keeps: a stage cut inside the frozen-prototype
    steps resumes to the files of an uninterrupted one (counting from 0 again would freeze them a step too long)."""
    dino = ["pretext.method=dino", "pretext.views.local_crops=0", "pretext.dino.freeze_last_layer_epochs=1",
            "pretext.dino.warmup_teacher_temp=0.02", "pretext.dino.teacher_temp_warmup_epochs=1",
            "pretext.dino.momentum_end=1.0", "train.deterministic=true"]
    args = [*ARGS, *(a for s in dino for a in ("--set", s))]
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    assert main(["pretrain", "-o", str(ref), *args]) == 0
    Injector(monkeypatch, at=2, only="training step")  # the stage's second step, prototypes still frozen
    with pytest.raises(Crash):
        main(["pretrain", "-o", str(cut), *args])
    Injector(monkeypatch)
    assert main(["pretrain", "--resume", str(cut)]) == 0
    weights = "target_params/adapter_model.safetensors"
    assert (cut / weights).read_bytes() == (ref / weights).read_bytes()


def test_segmentation_run_resumes_identically(tmp_path, monkeypatch):
    """The same guarantee for the segmentation task (decoder head, masks moved with their images)."""
    data = write_segmentation_npz(tmp_path / "seg.npz")
    sets = [a for s in ["threads=1", "seeds=1", "arms=[tpp]", f"data.path={data}", "pretext.epochs=1",
                        "finetune.epochs=2", "pretext.batch_size=3", "finetune.batch_size=3",
                        "checkpoint.every_steps=1"] for a in ("--set", s)]
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    assert main(["run", "-o", str(ref), *sets]) == 0
    Injector(monkeypatch, at=5, only="training step")  # fine-tuning, first step of its second epoch
    with pytest.raises(Crash):
        main(["run", "-o", str(cut), *sets])
    Injector(monkeypatch)
    assert main(["run", "--resume", str(cut)]) == 0
    assert comparable(cut) == comparable(ref)
    assert json.loads((cut / "summary.json").read_text())["primary_metric"] == "dice"
