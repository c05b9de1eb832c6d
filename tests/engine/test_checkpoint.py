"""Checkpoints: atomic checksummed files, the last two kept, and an exact resume of the training loop."""

import math
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import tppeft.faults as faults
from tppeft.engine.checkpoint import Checkpointer, CheckpointError, read_checkpoint, write_checkpoint
from tppeft.engine.loop import LoopOptions, NonFiniteLossError, Schedule, TrainingLoop, train
from tppeft.engine.selection import BestSoFar
from tppeft.engine.signals import RunInterrupted, request_stop

SRC = Path(__file__).resolve().parents[2] / "src"


def test_roundtrip_and_checksum_catches_every_kind_of_damage(tmp_path):
    path = tmp_path / "c.safetensors"
    tensors = {"a": torch.randn(5, 3), "step": torch.tensor(7), "rng": torch.get_rng_state()}
    write_checkpoint(path, tensors, {"loop": {"epoch": 2}, "x": float("inf")})
    ck = read_checkpoint(path)
    assert all(torch.equal(ck.tensors[k], v) for k, v in tensors.items())
    assert ck.meta["loop"] == {"epoch": 2} and ck.meta["x"] == math.inf
    raw = path.read_bytes()
    for name, damaged in [("flipped data byte", raw[:-5] + bytes([raw[-5] ^ 1]) + raw[-4:]),
                          ("truncated", raw[: len(raw) // 2]),
                          ("empty", b""),
                          ("garbled header", raw[:12] + b"#" + raw[13:])]:
        path.write_bytes(damaged)
        with pytest.raises(CheckpointError, match=str(path)):
            read_checkpoint(path)
        assert name


def test_keeps_two_and_falls_back_to_the_previous_good_one(tmp_path):
    logs = []
    metrics = tmp_path / "metrics.jsonl"
    ck = Checkpointer(tmp_path / "ck", "fp", logs=[metrics], log=logs.append)
    for i in range(4):
        metrics.write_text("x\n" * (i + 1))
        ck.meta["i"] = i
        ck.save({"w": torch.full((2,), float(i))}, {})
    files = sorted(p.name for p in (tmp_path / "ck").iterdir())
    assert files == ["ckpt-000002.safetensors", "ckpt-000003.safetensors"]
    newest = tmp_path / "ck" / files[-1]
    newest.write_bytes(newest.read_bytes()[:-3])  # a torn write
    metrics.write_text("x\n" * 9)
    again = Checkpointer(tmp_path / "ck", "fp", logs=[metrics], log=logs.append)
    got = again.resume()
    assert got.path.name == files[0] and again.meta == {"i": 2} and torch.equal(got.tensors["w"], torch.full((2,), 2.0))
    assert any("unreadable" in m for m in logs) and any("previous good checkpoint" in m for m in logs)
    assert metrics.read_text() == "x\n" * 3  # lines written after that checkpoint are cut off
    (tmp_path / "ck" / files[0]).write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="no good checkpoint is left"):
        Checkpointer(tmp_path / "ck", "fp", log=logs.append).resume()
    ck.save({"w": torch.zeros(2)}, {})
    with pytest.raises(CheckpointError, match="another configuration"):
        Checkpointer(tmp_path / "ck", "other", log=logs.append).resume()
    assert Checkpointer(tmp_path / "none", "fp").resume() is None


def test_the_seed_count_is_not_in_a_checkpoints_fingerprint_and_earlier_ones_that_held_it_resume(tmp_path):
    from tppeft.config import load_config
    from tppeft.engine.checkpoint import config_match, fingerprint
    from tppeft.engine.config import results_identity

    three, five = load_config(None, ["seeds=3"]), load_config(None, ["seeds=5"])
    match = config_match(five, "pretext", 0)
    current, earlier = match["fingerprint"], match["earlier"]
    assert current == config_match(three, "pretext", 0)["fingerprint"]
    assert current != config_match(five, "pretext", 1)["fingerprint"]
    assert current != config_match(load_config(None, ["seeds=5", "peft.r=4"]), "pretext", 0)["fingerprint"]
    # what earlier versions wrote: the whole config, seeds included, for this and any smaller seed count
    dumped = three.model_dump(mode="json", exclude={"threads", "checkpoint", "log"})
    dumped["backbone"].pop("sha256")  # a check added after them, never part of a fingerprint
    old = fingerprint(dumped, "pretext", 0)
    assert "seeds" not in results_identity(five) and old in earlier and current not in earlier
    Checkpointer(tmp_path / "ck", old).save({"w": torch.ones(2)}, {"i": 1})
    assert Checkpointer(tmp_path / "ck", **match).resume().meta["fingerprint"] == old
    with pytest.raises(CheckpointError, match="another configuration"):
        Checkpointer(tmp_path / "ck", current).resume()


def test_a_key_added_since_a_checkpoint_was_written_changes_nothing_at_its_default(tmp_path):
    """A checkpoint stores the identity it was made with: a configuration that differs only by keys the checkpoint
    lacks, at their defaults, resumes from it; a key it lacks set to another value, or a changed key, does not."""
    from tppeft.config import load_config
    from tppeft.engine.checkpoint import config_match

    plain = config_match(load_config(None, []), "pretext", 0)
    written = Checkpointer(tmp_path / "ck", **plain)
    written.identity = dict(plain["identity"])
    written.identity["pretext"] = {k: v for k, v in plain["identity"]["pretext"].items() if k != "drop_train_copies"}
    written.fingerprint = "written-before-the-key"
    written.save({"w": torch.ones(2)}, {})
    assert Checkpointer(tmp_path / "ck", **plain).resume() is not None
    for sets in (["pretext.drop_train_copies=true"], ["peft.r=4"]):
        with pytest.raises(CheckpointError, match="another configuration"):
            Checkpointer(tmp_path / "ck", **config_match(load_config(None, sets), "pretext", 0)).resume()



def test_a_key_added_to_the_items_of_a_list_changes_nothing_at_its_default(tmp_path):
    """Lists of sections (``pretext.data``) are filled item by item: a source written before ``limit`` existed
    resumes under ``limit`` unset and is refused with it set."""
    from tppeft.config import load_config
    from tppeft.engine.checkpoint import config_match

    source = "pretext.data=[{path: x.npz}]"
    plain = config_match(load_config(None, [source]), "pretext", 0)
    written = Checkpointer(tmp_path / "ck", **plain)
    written.identity = dict(plain["identity"])
    written.identity["pretext"] = {**plain["identity"]["pretext"],
                                   "data": [{k: v for k, v in plain["identity"]["pretext"]["data"][0].items()
                                             if k != "limit"}]}
    written.fingerprint = "written-before-the-key"
    written.save({"w": torch.ones(2)}, {})
    assert Checkpointer(tmp_path / "ck", **plain).resume() is not None
    with pytest.raises(CheckpointError, match="another configuration"):
        limited = load_config(None, ["pretext.data=[{path: x.npz, limit: 5}]"])
        Checkpointer(tmp_path / "ck", **config_match(limited, "pretext", 0)).resume()
    with pytest.raises(CheckpointError, match="another configuration"):  # a list that is shorter is no default
        Checkpointer(tmp_path / "ck", **config_match(load_config(None, []), "pretext", 0)).resume()

def test_a_log_made_after_the_checkpoint_is_emptied_on_resume(tmp_path):
    """A run's metrics file is made by its first epoch line, after the stage's first checkpoints: a resume from
    those cuts the line off rather than writing it a second time."""
    metrics = tmp_path / "metrics.jsonl"
    Checkpointer(tmp_path / "ck", "fp", logs=[metrics]).save({"w": torch.zeros(2)}, {})
    metrics.write_text('{"epoch": 1}\n')  # then the process dies before its next checkpoint
    assert Checkpointer(tmp_path / "ck", "fp", logs=[metrics]).resume() is not None
    assert metrics.read_text() == ""

class Crash(BaseException):
    """Stands for a kill: nothing in the loop may catch it."""


def _toy(init_seed: int = 0):
    """A model with dropout (global RNG), a noise generator (augmentation) and an order generator."""
    torch.manual_seed(init_seed)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.3), torch.nn.Linear(8, 1))
    data = torch.Generator().manual_seed(1)
    x, y = torch.randn(40, 4, generator=data), torch.randn(40, 1, generator=data)
    aug = torch.Generator().manual_seed(5)
    return net, x, y, aug


def _run(tmp_path, crash_at: int | None = None, every_steps: int = 0, on_nonfinite="stop", poison=(), init_seed=0,
         log=lambda s: None):
    """Train the toy 3 epochs x 4 steps, resuming from ``tmp_path`` if a checkpoint is there."""
    net, x, y, aug = _toy(init_seed)
    calls = {"n": 0}
    best = BestSoFar(list(net.parameters()))

    def on_epoch_end(epoch, loss):
        best.update(-loss, epoch, {"loss": loss})
        return {}

    def step_loss(idx):
        calls["n"] += 1
        if crash_at is not None and calls["n"] == crash_at:
            raise Crash
        noisy = x[idx] + 0.1 * torch.randn(len(idx), 4, generator=aug)
        loss = ((net(noisy) - y[idx]) ** 2).mean()
        return loss * math.nan if calls["n"] in poison else loss

    ck = Checkpointer(tmp_path, "toy", every_epochs=1, every_steps=every_steps, log=lambda s: None)
    res = train(list(net.parameters()), step_loss, 40, epochs=3, batch_size=10, lr=0.05, weight_decay=0.01,
                warmup_epochs=1, generator=torch.Generator().manual_seed(3), generators={"augment": aug},
                checkpoints=ck, resume=ck.resume(), extra=best, log=log, on_nonfinite=on_nonfinite,
                on_epoch_end=on_epoch_end)
    return [p.detach().clone() for p in net.parameters()], res, best


def test_progress_after_a_resume_estimates_the_time_left_from_this_process_pace(tmp_path, monkeypatch):
    import tppeft.engine.loop as loop

    with pytest.raises(Crash):
        _run(tmp_path, crash_at=6, every_steps=1)
    newest = max(tmp_path.glob("*.safetensors"))
    ckpt = read_checkpoint(newest)
    ckpt.meta["loop"]["elapsed"] = 86400.0  # the steps before the crash took a day (another machine, a busy one)
    write_checkpoint(newest, ckpt.tensors, ckpt.meta)
    monkeypatch.setattr(loop, "PROGRESS_SECONDS", 0.0)
    lines: list[str] = []
    _run(tmp_path, log=lines.append)
    progress = [line for line in lines if " step " in line and "eta" in line]
    assert progress and all(float(line.split("eta ")[1].rstrip("s]")) < 60 for line in progress)
    assert "[86400s" in progress[0]  # the stage's time so far still counts the day


@pytest.mark.parametrize("every_steps", [0, 3])
def test_loop_resumes_bit_identically_after_a_crash_at_any_step(tmp_path, every_steps):
    ref, ref_res, ref_best = _run(tmp_path / "ref")
    for k in range(1, 13):
        d = tmp_path / f"crash{k}"
        with pytest.raises(Crash):
            _run(d, crash_at=k, every_steps=every_steps)
        got, res, best = _run(d, init_seed=99)  # a new process: other weights until the checkpoint loads
        assert all(torch.equal(a, b) for a, b in zip(ref, got, strict=True)), f"crash at step {k}"
        assert [h["train_loss"] for h in res.history] == [h["train_loss"] for h in ref_res.history]
        assert best.epoch == ref_best.epoch and all(torch.equal(a, b) for a, b in
                                                    zip(best.state, ref_best.state, strict=True))
        assert len(list(d.iterdir())) <= 2


def test_stop_request_checkpoints_after_the_step_and_resumes_exactly(tmp_path):
    ref, _, _ = _run(tmp_path / "ref")
    net, x, y, aug = _toy()
    calls = {"n": 0}

    def step_loss(idx):
        calls["n"] += 1
        if calls["n"] == 6:
            request_stop()  # as SIGTERM's handler does
        noisy = x[idx] + 0.1 * torch.randn(len(idx), 4, generator=aug)
        return ((net(noisy) - y[idx]) ** 2).mean()

    ck = Checkpointer(tmp_path / "s", "toy", log=lambda s: None)
    best = BestSoFar(list(net.parameters()))
    try:
        with pytest.raises(RunInterrupted) as info:
            train(list(net.parameters()), step_loss, 40, epochs=3, batch_size=10, lr=0.05, weight_decay=0.01,
                  warmup_epochs=1, generator=torch.Generator().manual_seed(3), generators={"augment": aug},
                  checkpoints=ck, extra=best, log=lambda s: None,
                  on_epoch_end=lambda e, loss: {} if best.update(-loss, e, {"loss": loss}) else {})
    finally:
        from tppeft.engine import signals
        signals._requested.clear()
    assert info.value.path is not None and read_checkpoint(info.value.path).meta["loop"]["step"] == 6
    got, _, _ = _run(tmp_path / "s", init_seed=99)
    assert all(torch.equal(a, b) for a, b in zip(ref, got, strict=True))


def test_nonfinite_stop_keeps_the_last_good_checkpoint_and_skip_counts(tmp_path):
    with pytest.raises(NonFiniteLossError, match="non-finite loss or gradients in epoch 2.*last good checkpoint"):
        _run(tmp_path / "stop", every_steps=1, poison=(6,))
    ck = Checkpointer(tmp_path / "stop", "toy", log=lambda s: None).resume()
    assert ck.meta["loop"]["step"] == 5  # step 6 went bad: nothing after step 5 was saved
    assert all(torch.isfinite(t).all() for k, t in ck.tensors.items() if k.startswith("param."))
    params, res, _ = _run(tmp_path / "skip", on_nonfinite="skip", poison=(2, 7))
    assert res.skipped_steps == 2 and res.history[-1]["skipped_steps"] == 2 and res.steps == 12
    assert all(torch.isfinite(p).all() for p in params)
    with pytest.raises(NonFiniteLossError, match="every update of epoch 1 was skipped"):
        _run(tmp_path / "all", on_nonfinite="skip", poison=(1, 2, 3, 4))


def test_nonfinite_gradient_with_a_finite_loss_is_caught(tmp_path):
    p = torch.nn.Parameter(torch.zeros(3))
    with pytest.raises(NonFiniteLossError):  # d/dp sqrt(p) at 0 is inf while the loss is 0
        train([p], lambda idx: p.sqrt().sum(), 8, epochs=1, batch_size=4, lr=0.1, weight_decay=0,
              warmup_epochs=0, generator=torch.Generator(), log=lambda s: None)


def test_checkpoint_layout_is_stable(tmp_path):
    """The tensor names and metadata keys a checkpoint holds: older checkpoints must keep resuming."""
    _run(tmp_path, every_steps=3)
    ck = read_checkpoint(sorted(tmp_path.glob("ckpt-*.safetensors"))[-1])
    assert {re.sub(r"\.\d+", ".N", k) for k in ck.tensors} == {
        "param.N", "optim.N.exp_avg", "optim.N.exp_avg_sq", "optim.N.step", "rng.augment", "rng.torch_cpu",
        "rng.order_epoch_start", "loop.loss_sum", "loop.loss_sums", "loop.finite_steps", "extra.best.N"}
    assert set(ck.meta) == {"format", "loop", "optimizer", "scheduler", "extra", "fingerprint", "done", "stage",
                            "log_sizes"}
    assert set(ck.meta["loop"]) == {"epoch", "step_in_epoch", "step", "epochs", "steps_per_epoch", "skipped_steps",
                                    "history", "elapsed"}


def test_training_loop_object_is_what_train_runs():
    """``TrainingLoop`` built from ``LoopOptions`` gives exactly what ``train`` gives."""
    def fit(direct: bool):
        torch.manual_seed(0)
        net = torch.nn.Linear(3, 1)
        x, y = torch.randn(20, 3), torch.randn(20, 1)
        def loss(idx):
            return ((net(x[idx]) - y[idx]) ** 2).mean()
        order = torch.Generator().manual_seed(2)
        if direct:
            options = LoopOptions(Schedule(2, 6, 0.1, 0.01, 0.5), order, log=lambda s: None)
            res = TrainingLoop(list(net.parameters()), loss, 20, options).run()
        else:
            res = train(list(net.parameters()), loss, 20, epochs=2, batch_size=6, lr=0.1, weight_decay=0.01,
                        warmup_epochs=0.5, generator=order, log=lambda s: None)
        return [p.detach() for p in net.parameters()], res

    (a, ra), (b, rb) = fit(True), fit(False)
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    assert (ra.steps, [h["train_loss"] for h in ra.history]) == (rb.steps, [h["train_loss"] for h in rb.history])


# Three checkpoints of a stage, one after each step; the kill point named in the environment stops it.
_SAVES = """
import sys, torch
from pathlib import Path
from tppeft.engine.checkpoint import Checkpointer
ck = Checkpointer(Path(sys.argv[1]) / "tpp/seed0/checkpoints/pretext", "fp")
for i in range(3):
    ck.save({"w": torch.full((4096,), float(i))}, {"loop": {"epoch": 1, "step_in_epoch": i, "steps_per_epoch": 3}})
"""


def test_kill_points_fire_in_a_checkpoint_write_and_leave_the_previous_one_intact(tmp_path, monkeypatch):
    """TPPEFT_KILL_AT kills the writing process (a real SIGKILL) half-way through its second checkpoint; the
    first stays loadable and is what a resume takes. Before the rename, likewise (the kill patched in-process)."""
    env = {**os.environ, "PYTHONPATH": str(SRC), faults.ENV: "checkpoint-mid-write:2"}
    done = subprocess.run([sys.executable, "-c", _SAVES, str(tmp_path)], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "tppeft: kill point checkpoint-mid-write #2 reached: tpp/seed0 pretext checkpoint ckpt-000001.safetensors, "
        "epoch 1 step 1/3")
    stage = tmp_path / "tpp/seed0/checkpoints/pretext"
    partial = stage / ".ckpt-000001.safetensors.tmp"
    assert sorted(p.name for p in stage.iterdir()) == [partial.name, "ckpt-000000.safetensors"]
    with pytest.raises(CheckpointError):
        read_checkpoint(partial)  # half a file
    resumed = Checkpointer(stage, "fp").resume()
    assert resumed.path.name == "ckpt-000000.safetensors" and torch.equal(resumed.tensors["w"], torch.zeros(4096))

    class Killed(BaseException):
        pass

    seen = {}

    def kill():  # what a SIGKILL at this moment would leave on disk
        seen["files"] = sorted(p.name for p in stage.iterdir())
        seen["w"] = read_checkpoint(partial).tensors["w"]
        raise Killed

    monkeypatch.setattr(faults, "_kill", kill)
    monkeypatch.setattr(faults, "_reached", {})
    monkeypatch.setenv(faults.ENV, "checkpoint-before-rename")
    ck = Checkpointer(stage, "fp")
    ck.resume()
    with pytest.raises(Killed):
        ck.save({"w": torch.ones(4096)}, {"loop": {"epoch": 1, "step_in_epoch": 1, "steps_per_epoch": 3}})
    assert seen["files"] == [partial.name, "ckpt-000000.safetensors"]  # the stale half file replaced by a whole one
    assert torch.equal(seen["w"], torch.ones(4096))
    assert Checkpointer(stage, "fp").resume().path.name == "ckpt-000000.safetensors"
    monkeypatch.delenv(faults.ENV)
    assert ck.save({"w": torch.ones(4096)}, {}).name == "ckpt-000001.safetensors" and not partial.exists()
