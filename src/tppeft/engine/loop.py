"""The training loop shared by the TPP stage and the fine-tuning stage.

A stage differs only by its objective (``step_loss``) and its trainable set (``params``). The loop owns
checkpointing and resuming (see :mod:`tppeft.engine.checkpoint`): a resumed stage restores parameters,
optimizer, scheduler, every generator and the position inside the epoch's data order, so it continues
exactly as the uninterrupted run would have.

Under torchrun every process walks the same global batches and works on its share of each (see
:mod:`tppeft.distributed`); losses are weighted so that the averaged gradient is the one of the whole
batch, and the epoch's loss is reduced over processes. Nothing in a step waits for the device: the loss is
summed on the device and read at the epoch's end, and the non-finite check is a device flag read at
checkpoints and epoch ends (``on_nonfinite="skip"`` must read it every step).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

import torch

from tppeft import distributed
from tppeft.data import iterate_batches
from tppeft.engine.checkpoint import (
    Checkpoint,
    Checkpointer,
    CheckpointError,
    copy_into,
    optimizer_from_flat,
    optimizer_to_flat,
    prefixed,
    restore_rng,
    rng_tensors,
    unprefixed,
)
from tppeft.engine.devices import autocast
from tppeft.engine.signals import RunInterrupted, stop_requested

# With several processes a stop request (SIGTERM/SIGINT) is agreed on every this many steps (one collective).
STOP_POLL_STEPS = 10

# Called after each epoch with (epoch, mean training loss); returns metrics to log (may be empty).
EpochEnd = Callable[[int, float], dict]


class Stateful(Protocol):
    """Stage state that lives beside the loop (e.g. the best-so-far weights) and is checkpointed with it."""

    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict]: ...

    def load_state_dict(self, tensors: dict[str, torch.Tensor], meta: dict) -> None: ...


@dataclass
class TrainResult:
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    steps: int = 0
    skipped_steps: int = 0


def warmup_cosine(step: int, total: int, warmup: int) -> float:
    """Learning-rate factor: linear warm-up to 1, then cosine to 0."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def epoch_steps(num_items: int, batch_size: int) -> tuple[int, bool]:
    """Optimizer steps per epoch and whether the last partial batch is dropped (it is when a full one exists)."""
    drop_last = num_items > batch_size
    return max(1, num_items // batch_size if drop_last else math.ceil(num_items / batch_size)), drop_last


class NonFiniteLossError(RuntimeError):
    """The loss or the gradients became NaN or infinite; the run stops rather than writing invalid metrics."""


def _grads_finite(params: list[torch.Tensor], loss: torch.Tensor) -> torch.Tensor:
    """A device bool: the loss and every gradient are finite (no host sync)."""
    flags = [torch.isfinite(loss.detach())] + [torch.isfinite(p.grad).all() for p in params if p.grad is not None]
    return torch.stack(flags).all()


@dataclass
class _Position:
    """Where the loop is: the next epoch to finish, steps done in it, and the epoch's data-order state."""

    epoch: int = 1
    step_in_epoch: int = 0
    step: int = 0
    order_state: torch.Tensor | None = None  # the order generator's state at the start of ``epoch``


def train(
    params: list[torch.nn.Parameter | dict],
    step_loss: Callable[[torch.Tensor], torch.Tensor],
    num_items: int,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    warmup_epochs: float,
    generator: torch.Generator,
    betas: tuple[float, float] = (0.9, 0.999),
    on_epoch_end: EpochEnd | None = None,
    after_step: Callable[[], None] | None = None,
    log: Callable[[str], None] = print,
    tag: str = "",
    generators: dict[str, torch.Generator] | None = None,
    checkpoints: Checkpointer | None = None,
    resume: Checkpoint | None = None,
    extra: Stateful | None = None,
    on_nonfinite: Literal["stop", "skip"] = "stop",
    precision: torch.dtype | None = None,
) -> TrainResult:
    """AdamW with warm-up + cosine over ``epochs`` passes of shuffled index batches.

    ``params`` holds parameters (trained at ``lr``) and/or optimizer group dicts with their own ``lr``.
    ``step_loss(indices)`` computes the loss of one batch; the loop does the backward and the update.
    ``generator`` orders the data; ``generators`` are the other generators the stage draws from (augmentation,
    masks): all are checkpointed. With ``checkpoints`` the loop writes a checkpoint at the start, at the
    configured interval and when a stop is requested (SIGINT/SIGTERM); with ``resume`` it continues from one.
    A non-finite loss or gradient stops the run (``on_nonfinite="stop"``, no checkpoint is written after it)
    or skips that update and counts it (``"skip"``).
    ``after_step()``, if given, runs after every applied optimizer step (an EMA teacher updates there).
    ``precision``: the autocast dtype of ``step_loss`` (None = float32). Under torchrun, ``step_loss`` gets
    this process's share of each batch and must run its model through ``DistributedDataParallel``.
    """
    result = TrainResult()
    if epochs == 0:
        return result
    generators = dict(generators or {})
    groups = [g for g in params if isinstance(g, dict)]
    plain = [p for p in params if not isinstance(p, dict)]
    if plain:
        groups.insert(0, {"params": plain})
    every = [p for g in groups for p in g["params"]]
    device = every[0].device
    fused = all(p.is_cuda for p in every)
    opt = torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay, betas=betas, fused=fused or None)
    steps_per_epoch, drop_last = epoch_steps(num_items, batch_size)
    total = epochs * steps_per_epoch
    warmup = int(round(warmup_epochs * steps_per_epoch))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, total, warmup))
    pos = _Position()
    loss_sum = torch.zeros((), device=device)
    finite_steps = torch.zeros((), dtype=torch.long, device=device)
    bad_steps = torch.zeros((), dtype=torch.long, device=device)  # "stop" mode: counted without a host sync
    elapsed_before = 0.0
    world = distributed.world_size()

    def snapshot(done_epoch_end: bool = False) -> tuple[dict, dict]:
        opt_tensors, opt_meta = optimizer_to_flat(opt)
        tensors = {**prefixed("param.", {str(i): p for i, p in enumerate(every)}), **opt_tensors,
                   **rng_tensors(generators), "rng.order_epoch_start": pos.order_state,
                   "loop.loss_sum": distributed.all_sum(loss_sum) / world, "loop.finite_steps": finite_steps}
        meta = {"loop": {"epoch": pos.epoch, "step_in_epoch": pos.step_in_epoch, "step": pos.step,
                         "epochs": epochs, "steps_per_epoch": steps_per_epoch, "skipped_steps": result.skipped_steps,
                         "history": result.history, "elapsed": elapsed_before + time.perf_counter() - start},
                "optimizer": opt_meta, "scheduler": sched.state_dict()}
        if extra is not None:
            extra_tensors, extra_meta = extra.state_dict()
            tensors.update(prefixed("extra.", extra_tensors))
            meta["extra"] = extra_meta
        return tensors, meta

    def check_finite() -> None:
        if on_nonfinite == "stop" and distributed.any_process(bad_steps > 0):
            last = f"; last good checkpoint: {checkpoints.last_saved}" if checkpoints and checkpoints.last_saved else ""
            raise NonFiniteLossError(f"{tag}: non-finite loss or gradients in epoch {pos.epoch} (before step "
                                     f"{pos.step}); stopping this run{last}. Lower the learning rate, or set "
                                     "train.on_nonfinite=skip to skip such steps")

    def save(reason: str = "") -> None:
        if checkpoints is None:
            return
        check_finite()  # never checkpoint a state that a non-finite update has touched
        path = checkpoints.save(*snapshot())
        if reason:
            log(f"{tag} checkpoint {path} ({reason})")

    def stop_agreed(step: int | None = None) -> bool:
        """A stop was requested (in any process: they stop together, at a step where all of them ask)."""
        if world == 1:
            return stop_requested()
        if step is not None and step % STOP_POLL_STEPS:
            return False
        return distributed.any_process(stop_requested())

    start = time.perf_counter()
    if resume is not None:
        loop = resume.meta["loop"]
        if loop["epochs"] != epochs or loop["steps_per_epoch"] != steps_per_epoch:
            raise CheckpointError(f"{resume.path}: checkpoint of {loop['epochs']}x{loop['steps_per_epoch']} steps, "
                             f"this stage has {epochs}x{steps_per_epoch}")
        copy_into(every, [resume.tensors[f"param.{i}"] for i in range(len(every))])
        optimizer_from_flat(opt, resume.tensors, resume.meta["optimizer"])
        sched.load_state_dict(resume.meta["scheduler"])
        restore_rng(generators, resume.tensors)
        pos = _Position(loop["epoch"], loop["step_in_epoch"], loop["step"], resume.tensors["rng.order_epoch_start"])
        loss_sum = resume.tensors["loop.loss_sum"].to(device)
        finite_steps = resume.tensors["loop.finite_steps"].to(device)
        result.history, result.skipped_steps = list(loop["history"]), loop["skipped_steps"]
        elapsed_before = loop["elapsed"]
        if extra is not None:
            extra.load_state_dict(unprefixed("extra.", resume.tensors), resume.meta.get("extra", {}))
        log(f"{tag} resumed from {resume.path}: epoch {pos.epoch}, step {pos.step_in_epoch}/{steps_per_epoch}")
    else:
        pos.order_state = generator.get_state()
        save()  # the stage-start checkpoint

    while pos.epoch <= epochs:
        epoch = pos.epoch
        generator.set_state(pos.order_state)
        for i, idx in enumerate(iterate_batches(num_items, batch_size, generator, drop_last=drop_last)):
            if i < pos.step_in_epoch:
                continue  # done before the checkpoint this run resumed from
            with autocast(device, precision):
                if world == 1:
                    loss = step_loss(idx)
                else:  # this process's rows; weighted so that DDP's mean over processes is the batch mean
                    start_row, stop_row = distributed.share_bounds(len(idx))
                    with distributed.batch_share(start_row, stop_row, len(idx)):
                        loss = step_loss(idx[start_row:stop_row]) * ((stop_row - start_row) * world / len(idx))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            ok = _grads_finite(every, loss)
            skipped_now = False
            if on_nonfinite == "skip":
                if not distributed.any_process(~ok):
                    opt.step()
                    if after_step is not None:
                        after_step()
                    loss_sum += loss.detach()
                    finite_steps += 1
                else:
                    result.skipped_steps += 1
                    log(f"{tag} WARNING: non-finite loss or gradients at epoch {epoch} step {i + 1}; "
                        f"update skipped ({result.skipped_steps} so far)")
                    skipped_now = True
            else:
                opt.step()
                if after_step is not None:
                    after_step()
                bad_steps += ~ok
                loss_sum += loss.detach()
                finite_steps += 1
            with warnings.catch_warnings():  # the schedule follows the data, also past a skipped update
                if skipped_now:
                    warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)`")
                sched.step()
            pos.step += 1
            pos.step_in_epoch = i + 1
            if stop_agreed(pos.step):
                save("stop requested")
                raise RunInterrupted(checkpoints.last_saved if checkpoints else None)
            if checkpoints is not None and pos.step_in_epoch < steps_per_epoch and checkpoints.due(pos.step):
                save()
        check_finite()
        n = int(finite_steps)  # one host sync per epoch
        if n == 0:
            raise NonFiniteLossError(f"{tag}: every update of epoch {epoch} was skipped (non-finite loss or "
                                     "gradients); stopping this run")
        mean_loss = float(distributed.all_sum(loss_sum)) / world / n
        if not math.isfinite(mean_loss):
            raise NonFiniteLossError(f"{tag}: training loss is {mean_loss} at epoch {epoch}; stopping this run")
        record = {"epoch": epoch, "train_loss": round(mean_loss, 6)}
        if on_epoch_end is not None:
            record.update(on_epoch_end(epoch, mean_loss))
        elapsed = elapsed_before + time.perf_counter() - start
        record["seconds"] = round(elapsed, 2)
        if result.skipped_steps:
            record["skipped_steps"] = result.skipped_steps
        result.history.append(record)
        pos = _Position(epoch + 1, 0, pos.step, generator.get_state())
        loss_sum = torch.zeros((), device=device)
        finite_steps = torch.zeros((), dtype=torch.long, device=device)
        eta = elapsed / epoch * (epochs - epoch)
        extras = " ".join(f"{k} {v:.4f}" for k, v in record.items()
                          if k not in ("epoch", "train_loss", "seconds") and isinstance(v, float))
        log(f"{tag} epoch {epoch}/{epochs} loss {mean_loss:.4f} {extras} [{elapsed:.0f}s, eta {eta:.0f}s]")
        if stop_agreed() and epoch < epochs:
            save("stop requested")
            raise RunInterrupted(checkpoints.last_saved if checkpoints else None)
        if checkpoints is not None and epoch < epochs and checkpoints.due(pos.step, epoch):
            save()
    result.steps = pos.step
    result.seconds = elapsed_before + time.perf_counter() - start
    return result
