"""Several processes through torchrun (gloo on CPU): each process's share of a batch, per-image random draws
made for the whole batch, a 2-process comparison that matches a 1-process run with the same global batch, a
2-process segmentation comparison stopped, killed and resumed to the same numbers, and the refusal of pretext
tasks that couple the images of a batch.

Tolerance of the 2-process match: at least 99.9% of the saved target-parameter and head values within 1e-6
and every one within 1e-4; training losses within 1e-5; test metrics within 1e-4. The two runs see the same
images, crops, flips and masks in the same order and differ only in float32 rounding: each process multiplies
half a batch (other matrix shapes, other summation order) and DDP averages two half-batch gradients where one
process averages one batch (about 1e-7 relative per gradient). Adam divides each gradient by its own running
magnitude, so for the few values whose gradient is itself near zero that rounding becomes a visible part of a
step (measured: 5 of 294,912 LoRA values differ by 1e-5 to 3e-5 after a 3-step TPP stage at lr 3e-3, where
steps move values by up to 3e-3). A wrong share, order or mask would move most values by about a step.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import wait_for, write_segmentation_npz
from safetensors.torch import load_file

from tppeft import distributed
from tppeft.cli import main
from tppeft.config import load_config
from tppeft.experiment.preflight import check_unshared_batches
from tppeft.rundir import comparable_outputs

SRC = Path(__file__).resolve().parents[1] / "src"
# Finetune batch 7 on 2 processes: shares of 4 and 3 rows, so the loss weighting is exercised.
SETS = ["pretext.probe=false", "data.image_size=32", "threads=1",
        "seeds=1", "data.limit=24", "pretext.epochs=1", "finetune.epochs=1",
        "pretext.batch_size=8", "finetune.batch_size=7"]
ARGS = [a for s in SETS for a in ("--set", s)]
# Segmentation, the tpp arm, 2 + 2 epochs of 2 steps (a batch of 3 shared 2 + 1), a checkpoint after every step.
SEG = ["threads=1", "seeds=1", "arms=[tpp]", "pretext.epochs=2", "finetune.epochs=2", "pretext.batch_size=3",
       "finetune.batch_size=3", "checkpoint.every_steps=1"]


@pytest.mark.parametrize("world,total", [(2, 7), (3, 10), (4, 4), (2, 1)])
def test_shares_are_contiguous_and_cover_the_batch(monkeypatch, world, total):
    monkeypatch.setenv("WORLD_SIZE", str(world))
    rows = []
    for r in range(world):
        monkeypatch.setenv("RANK", str(r))
        rows.append(distributed.share_bounds(total))
    assert rows[0][0] == 0 and rows[-1][1] == total
    assert all(a[1] == b[0] for a, b in zip(rows, rows[1:], strict=False))
    sizes = [b - a for a, b in rows]
    assert max(sizes) - min(sizes) <= 1


def test_per_item_draws_for_the_whole_batch_and_keeps_its_rows():
    full = torch.Generator().manual_seed(3)
    expected = torch.rand(6, 4, generator=full)
    after = torch.rand(2, generator=full)
    gen = torch.Generator().manual_seed(3)
    with distributed.batch_share(2, 5, 6):
        mine = distributed.per_item(3, lambda m: torch.rand(m, 4, generator=gen))
    assert torch.equal(mine, expected[2:5])
    assert torch.equal(torch.rand(2, generator=gen), after)  # the generator moved as for the whole batch
    outside = torch.Generator().manual_seed(3)
    assert torch.equal(distributed.per_item(6, lambda m: torch.rand(m, 4, generator=outside)), expected)


def _target_tensors(out: Path) -> dict[str, torch.Tensor]:
    tensors = {}
    for path in sorted(out.glob("runs/*/seed0/*/target_params.safetensors")):
        for k, v in load_file(str(path)).items():
            tensors[f"{path.relative_to(out)}:{k}"] = v
    for path in sorted(out.glob("runs/*/seed0/finetuned/head.safetensors")):
        for k, v in load_file(str(path)).items():
            tensors[f"{path.relative_to(out)}:{k}"] = v
    return tensors


def _losses(out: Path) -> list[float]:
    lines = [json.loads(x) for p in sorted(out.glob("runs/*/seed0/metrics.jsonl")) for x in p.read_text().splitlines()]
    return [x["train_loss"] for x in lines if "train_loss" in x] + [
        x[k] for x in lines if x.get("event") == "end" and x["stage"] == "pretext" for k in ("loss_start", "loss_end")]


def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path, one_thread):
    one = tmp_path / "one"
    assert main(["run", "-o", str(one), *ARGS]) == 0
    two = tmp_path / "two"
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "tppeft", "run", "-o", str(two), *ARGS], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("paired") <= 1 and done.stdout.count("wall time") == 1  # process 0 alone prints
    results = [json.loads(x) for x in (two / "results.jsonl").read_text().splitlines()]
    assert [(r["arm"], r["seed"]) for r in results] == [("baseline", 0), ("tpp", 0)]  # written once
    summary = json.loads((two / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["finetune"]["batch_size"] == 7  # the global batch
    ref, got = _target_tensors(one), _target_tensors(two)
    assert ref.keys() == got.keys() and len(ref) >= 3
    diff = torch.cat([(ref[k] - got[k]).abs().flatten() for k in ref])
    assert diff.max() <= 1e-4 and (diff <= 1e-6).float().mean() >= 0.999, (diff.max(), (diff > 1e-6).sum())
    assert _losses(two) == pytest.approx(_losses(one), abs=1e-5)
    ref_sum = json.loads((one / "summary.json").read_text())
    for arm in ("baseline", "tpp"):
        a, b = ref_sum["arms"][arm]["runs"][0], summary["arms"][arm]["runs"][0]
        assert b["best_epoch"] == a["best_epoch"]
        for m, v in a["test"].items():
            assert b["test"][m] == pytest.approx(v, abs=1e-4), (arm, m)


def _spawn_gloo(worker, args: tuple, nprocs: int, store: Path, tries: int = 3) -> None:
    """``torch.multiprocessing.spawn`` of gloo workers that join through the file ``store``, again with a fresh
    store when gloo failed to connect its processes to each other (``connectFullMesh``: an intermittent failure
    of gloo's own start-up on a loaded machine, before any code under test ran); any other failure is raised."""
    for attempt in range(tries):
        try:
            torch.multiprocessing.spawn(worker, args=(nprocs, str(store.with_suffix(f".{attempt}")), *args),
                                        nprocs=nprocs)
            return
        except torch.multiprocessing.ProcessRaisedException as e:
            if "connectFullMesh" not in str(e) or attempt == tries - 1:
                raise


def _gather_worker(rank: int, world: int, store: str, totals: list[int], out: str) -> None:
    os.environ.update(WORLD_SIZE=str(world), RANK=str(rank))
    torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        got = {}
        for total in totals:
            start, stop = distributed.eval_share(total)
            rows = torch.arange(start, stop, dtype=torch.uint8)[:, None].expand(-1, 3).contiguous()
            got[total] = (start, stop, distributed.gather_rows(rows, total))
        torch.save(got, f"{out}.{rank}")
    finally:
        torch.distributed.destroy_process_group()


def test_gather_rows_joins_every_share_in_order(tmp_path):
    """Evaluation under torchrun: each process predicts its share; gathering gives every row once, in order
    (uneven shares padded and trimmed; uint8 predictions kept); fewer rows than processes: all predict all.
    One group of 3 processes gathers 7, 2 and 1 rows in turn."""
    out = str(tmp_path / "rows")
    totals = [7, 2, 1]
    _spawn_gloo(_gather_worker, (totals, out), 3, tmp_path / "store")
    got = [torch.load(f"{out}.{r}") for r in range(3)]
    for total in totals:
        expected = torch.arange(total, dtype=torch.uint8)[:, None].expand(-1, 3)
        shares = []
        for r in range(3):
            start, stop, rows = got[r][total]
            shares.append((start, stop))
            assert rows.dtype == torch.uint8 and torch.equal(rows, expected), (total, r)
        assert shares == ([(0, 3), (3, 5), (5, 7)] if total == 7 else [(0, total)] * 3), total


def _dice_worker(rank: int, world: int, store: str, out: str) -> None:
    from types import SimpleNamespace

    from monai.losses import DiceCELoss

    from tppeft.tasks.segmentation import SegmentationTask

    os.environ.update(WORLD_SIZE=str(world), RANK=str(rank))
    torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        gen = torch.Generator().manual_seed(0)
        images, masks = torch.randn(7, 1, 12, 12, generator=gen), torch.randint(0, 3, (7, 12, 12), generator=gen)
        masks[2] = 0  # an image without foreground
        criterion = DiceCELoss(include_background=False, to_onehot_y=True, softmax=True, batch=True)
        task = SimpleNamespace(criterion=criterion, num_classes=3)
        torch.manual_seed(1)  # the same model in every process
        conv = torch.nn.Conv2d(1, 3, 3, padding=1)
        whole = criterion(conv(images), masks[:, None])  # one process, the whole batch
        (ref,) = torch.autograd.grad(whole, conv.weight)
        start, stop = distributed.share_bounds(7)  # shares of 4 and 3 rows
        with distributed.batch_share(start, stop, 7):
            weight = distributed.share_weight()
            mine = SegmentationTask._shared_loss(task, conv(images[start:stop]), masks[start:stop], weight)
        (grad,) = torch.autograd.grad(mine * weight, conv.weight)  # the loop's weighting, then DDP's mean
        torch.save((float(whole), float(distributed.all_sum(mine.detach() * weight)) / world, ref,
                    distributed.all_sum(grad) / world), f"{out}.{rank}")
    finally:
        torch.distributed.destroy_process_group()


def test_segmentation_batch_dice_is_the_whole_batch_s_under_torchrun(tmp_path):
    """MONAI's batch Dice couples the images of a batch: under torchrun its sums are added over processes, so
    the averaged gradient (and the loss) equal one process's on the whole batch, uneven shares included."""
    out = str(tmp_path / "dice")
    _spawn_gloo(_dice_worker, (out,), 2, tmp_path / "store")
    for r in range(2):
        whole, shared, ref, grad = torch.load(f"{out}.{r}")
        assert shared == pytest.approx(whole, rel=1e-6)
        assert torch.allclose(grad, ref, rtol=1e-5, atol=1e-7), (grad - ref).abs().max()


def _torchrun(args: list[str], **kw) -> subprocess.Popen:
    """``torchrun --nproc_per_node 2 -m tppeft ARGS`` (gloo on CPU), its stderr (every process's) piped."""
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             "-m", "tppeft", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, **kw)


def _finish(proc: subprocess.Popen, timeout: float = 600) -> tuple[int, str]:
    rest = proc.communicate(timeout=timeout)[1]
    return proc.returncode, rest


def _kill_all(proc: subprocess.Popen) -> None:
    """SIGKILL torchrun and its workers (each in a session of its own) at once, as a power loss would."""
    workers = [int(d.name) for d in Path("/proc").iterdir() if d.name.isdigit() and _parent(d) == proc.pid]
    assert len(workers) == 2, workers
    for pid in [*workers, proc.pid]:
        os.kill(pid, signal.SIGKILL)
    proc.wait()


def _parent(proc_dir: Path) -> int | None:
    try:
        return int((proc_dir / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _comparable(out: Path) -> dict:
    """What must not depend on interruptions (timings aside): results, metrics lines, weight files, summary."""
    summary = json.loads((out / "summary.json").read_text())
    arms = {a: (e["mean"], e["std"], e["n"]) for a, e in summary["arms"].items()}
    return {**comparable_outputs(out), "summary": arms}


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="finds torchrun's workers in /proc")
def test_torchrun_segmentation_stopped_killed_and_resumed_matches_the_uninterrupted_run(tmp_path, one_thread):
    """Segmentation end to end on 2 processes, uninterrupted; then the same comparison stopped by SIGTERM to
    torchrun during the TPP stage, resumed under torchrun and killed (SIGKILL to every process) during fine-tuning,
    and resumed under torchrun again: the same files and numbers. A copy of the stopped folder resumed in one
    process continues too (to the 2-process numbers up to the rounding of another process count)."""
    data = write_segmentation_npz(tmp_path / "seg.npz")
    args = [a for s in [*SEG, f"data.path={data}"] for a in ("--set", s)]
    ref = tmp_path / "ref"
    code, err = _finish(_torchrun(["run", "-o", str(ref), *args]))
    assert code == 0, err[-3000:]
    summary = json.loads((ref / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["primary_metric"] == "dice" and (ref / "examples.png").is_file()
    assert 0 <= summary["arms"]["tpp"]["mean"]["dice"] <= 1 and summary["arms"]["tpp"]["n"] == 1

    out = tmp_path / "cut"
    proc = _torchrun(["run", "-o", str(out), *args])
    wait_for(proc, "== run 1/1: arm tpp, seed 0")
    proc.send_signal(signal.SIGTERM)  # torchrun passes it on; the processes agree to stop at the TPP stage's epoch 1
    code, err = _finish(proc)
    stops = [x for x in err.splitlines() if "stopped by SIGTERM" in x]
    assert code != 0 and len(stops) == 1, err[-3000:]  # the first process alone says it
    assert stops[0].startswith(f"tppeft: stopped by SIGTERM; checkpoint {out}/runs/tpp/seed0/checkpoints/pretext/"
                               "ckpt-") and stops[0].endswith(f" written; resume with: tppeft run --resume {out}")
    assert not (out / "summary.json").exists()
    other = tmp_path / "other"
    shutil.copytree(out, other)

    proc = _torchrun(["run", "--resume", str(out), "--set", "threads=1"])
    wait_for(proc, "[tpp seed 0] finetune epoch 1/2")
    _kill_all(proc)
    assert list((out / "runs/tpp/seed0/checkpoints/finetune").glob("ckpt-*.safetensors"))
    code, err = _finish(_torchrun(["run", "--resume", str(out), "--set", "threads=1"]))
    assert code == 0, err[-3000:]
    assert _comparable(out) == _comparable(ref)

    assert main(["run", "--resume", str(other), "--set", "threads=1"]) == 0  # one process from here on
    one = json.loads((other / "summary.json").read_text())
    assert one["processes"] == 1
    a, b = summary["arms"]["tpp"]["runs"][0], one["arms"]["tpp"]["runs"][0]
    assert b["best_epoch"] == a["best_epoch"] and b["pretext"]["train_loss_curve"] == pytest.approx(
        a["pretext"]["train_loss_curve"], abs=1e-5)
    assert b["test"]["dice"] == pytest.approx(a["test"]["dice"], abs=1e-3)
    assert b["test"]["iou"] == pytest.approx(a["test"]["iou"], abs=1e-3)


def test_batch_coupled_pretext_tasks_are_refused_under_torchrun(tmp_path, monkeypatch, capsys):
    """DINO and SimCLR compute their loss over the whole batch: under torchrun (its WORLD_SIZE and RANK, all the
    check reads: it runs before any process group is joined) every process names every arm that uses one, in one
    line, before the output folder exists; a stage command names its pretext.method."""
    out = tmp_path / "refused"
    monkeypatch.setenv("WORLD_SIZE", "2")
    reason = ("a pretext task that computes its loss over the whole batch (negatives, centring) cannot run under "
              "torchrun, where each process has a share of the batch; run it in one process per job")
    for rank, tag in ((0, "tppeft:"), (1, "tppeft [process 1]:")):
        monkeypatch.setenv("RANK", str(rank))
        assert main(["run", "-o", str(out), *ARGS, "--set", "pretext.method=dino",
                     "--set", "arms=[baseline, tpp, tpp_simclr]"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"{tag} error: arms: 'tpp' (pretext task 'dino'), 'tpp_simclr' (pretext task "
                              f"'simclr'): {reason}") and "\n" not in err, err
    assert main(["pretrain", "-o", str(out), *ARGS, "--set", "pretext.method=simclr"]) == 2
    assert f"error: pretext.method (pretext task 'simclr'): {reason}" in capsys.readouterr().err
    assert not out.exists()
    cfg = load_config(None, ["pretext.method=dino", "arms=[baseline, tpp]"])
    check_unshared_batches(cfg, True, ["baseline"])  # a job (--only) without such an arm goes ahead
