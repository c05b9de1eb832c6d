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

:func:`train` builds a :class:`TrainingLoop` from :class:`LoopOptions` (the :class:`Schedule`, the hooks, the
checkpointed state, the non-finite policy and the log) and runs it: :meth:`TrainingLoop.run` walks the epochs
(:meth:`~TrainingLoop.run_epoch`, :meth:`~TrainingLoop.end_epoch`), each batch is one
:meth:`~TrainingLoop.step`, and :meth:`~TrainingLoop.snapshot` / :meth:`~TrainingLoop.restore` are the two
halves of a checkpoint.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, NoReturn, Protocol

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
from tppeft.errors import NonFiniteLossError

# With several processes a stop request (SIGTERM/SIGINT) is agreed on every this many steps (one collective).
STOP_POLL_STEPS = 10
PROGRESS_SECONDS = 60.0  # a progress line inside an epoch at most this often (one host read of the loss)

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


@dataclass(frozen=True)
class Schedule:
    """AdamW over ``epochs`` passes of ``batch_size`` batches: linear warm-up, then cosine to 0."""

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    warmup_epochs: float
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass
class LoopOptions:
    """What a stage gives the loop besides its parameters, objective and data size (see :func:`train`)."""

    schedule: Schedule
    generator: torch.Generator  # orders the data
    # hooks
    on_epoch_end: EpochEnd | None = None
    after_step: Callable[[], None] | None = None
    # state checkpointed with the loop
    generators: dict[str, torch.Generator] = field(default_factory=dict)
    checkpoints: Checkpointer | None = None
    resume: Checkpoint | None = None
    extra: Stateful | None = None
    # policy
    on_nonfinite: Literal["stop", "skip"] = "stop"
    precision: torch.dtype | None = None
    # output
    log: Callable[[str], None] = print
    tag: str = ""


class TrainingLoop:
    """One stage's training, from its start or from a checkpoint to its last epoch (see :func:`train`)."""

    def __init__(self, params: list[torch.nn.Parameter | dict], step_loss: Callable[[torch.Tensor], torch.Tensor],
                 num_items: int, options: LoopOptions):
        self.options, self.schedule = options, options.schedule
        self.step_loss, self.num_items = step_loss, num_items
        self.result = TrainResult()
        self.generators = dict(options.generators)
        self.checkpoints = options.checkpoints
        self.groups = _param_groups(params)
        self.params = [p for g in self.groups for p in g["params"]]
        self.device = self.params[0].device
        self.optimizer = self._optimizer()
        self.steps_per_epoch, self.drop_last = epoch_steps(num_items, self.schedule.batch_size)
        self.scheduler = self._schedule()
        self.pos = _Position()
        self.loss_sum, self.finite_steps = self._epoch_sums()
        self.bad_steps = torch.zeros((), dtype=torch.long, device=self.device)  # "stop" mode, read at checkpoints
        self.elapsed_before = 0.0
        self.world = distributed.world_size()
        self.start = self.last_progress = time.perf_counter()  # the clock of ``elapsed`` and of progress lines
        self.first_step = 0  # the step this process started from (after a resume, the checkpoint's)

    # -- construction

    def _optimizer(self) -> torch.optim.AdamW:
        """AdamW over the parameter groups (the fused kernel when every parameter is on a GPU)."""
        s = self.schedule
        fused = all(p.is_cuda for p in self.params)
        return torch.optim.AdamW(self.groups, lr=s.lr, weight_decay=s.weight_decay, betas=s.betas,
                                 fused=fused or None)

    def _schedule(self) -> torch.optim.lr_scheduler.LambdaLR:
        """The learning-rate factor per optimizer step: warm-up, then cosine over every step of the stage."""
        total = self.schedule.epochs * self.steps_per_epoch
        warmup = int(round(self.schedule.warmup_epochs * self.steps_per_epoch))
        return torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: warmup_cosine(s, total, warmup))

    def _epoch_sums(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Fresh device counters of an epoch: the summed loss and the applied steps."""
        return torch.zeros((), device=self.device), torch.zeros((), dtype=torch.long, device=self.device)

    def _log(self, message: str) -> None:
        """Log a line under the stage's tag."""
        self.options.log(f"{self.options.tag} {message}")

    def elapsed(self) -> float:
        """Training seconds of the stage so far, including those before a resume."""
        return self.elapsed_before + time.perf_counter() - self.start

    # -- checkpoints

    def snapshot(self) -> tuple[dict[str, torch.Tensor], dict]:
        """The loop's state as a checkpoint's tensors and metadata."""
        opt_tensors, opt_meta = optimizer_to_flat(self.optimizer)
        tensors = {**prefixed("param.", {str(i): p for i, p in enumerate(self.params)}), **opt_tensors,
                   **rng_tensors(self.generators), "rng.order_epoch_start": self.pos.order_state,
                   "loop.loss_sum": distributed.all_sum(self.loss_sum) / self.world,
                   "loop.loss_sums": distributed.all_values(self.loss_sum), "loop.finite_steps": self.finite_steps}
        meta = {"loop": {"epoch": self.pos.epoch, "step_in_epoch": self.pos.step_in_epoch, "step": self.pos.step,
                         "epochs": self.schedule.epochs, "steps_per_epoch": self.steps_per_epoch,
                         "skipped_steps": self.result.skipped_steps, "history": self.result.history,
                         "elapsed": self.elapsed()},
                "optimizer": opt_meta, "scheduler": self.scheduler.state_dict()}
        extra = self.options.extra
        if extra is not None:
            extra_tensors, extra_meta = extra.state_dict()
            tensors.update(prefixed("extra.", extra_tensors))
            meta["extra"] = extra_meta
        return tensors, meta

    def restore(self, ckpt: Checkpoint) -> None:
        """Continue from ``ckpt``: parameters, optimizer, schedule, generators, position, sums and stage state."""
        loop = ckpt.meta["loop"]
        if loop["epochs"] != self.schedule.epochs or loop["steps_per_epoch"] != self.steps_per_epoch:
            raise CheckpointError(f"{ckpt.path}: checkpoint of {loop['epochs']}x{loop['steps_per_epoch']} steps, "
                                  f"this stage has {self.schedule.epochs}x{self.steps_per_epoch}")
        copy_into(self.params, [ckpt.tensors[f"param.{i}"] for i in range(len(self.params))])
        optimizer_from_flat(self.optimizer, ckpt.tensors, ckpt.meta["optimizer"])
        self.scheduler.load_state_dict(ckpt.meta["scheduler"])
        restore_rng(self.generators, ckpt.tensors)
        self.pos = _Position(loop["epoch"], loop["step_in_epoch"], loop["step"], ckpt.tensors["rng.order_epoch_start"])
        self.first_step = self.pos.step
        self.loss_sum = self._restored_loss_sum(ckpt.tensors)
        self.finite_steps = ckpt.tensors["loop.finite_steps"].to(self.device)
        self.result.history, self.result.skipped_steps = list(loop["history"]), loop["skipped_steps"]
        self.elapsed_before = loop["elapsed"]
        if self.options.extra is not None:
            self.options.extra.load_state_dict(unprefixed("extra.", ckpt.tensors), ckpt.meta.get("extra", {}))
        self._log(f"resumed from {ckpt.path}: epoch {self.pos.epoch}, step {self.pos.step_in_epoch}/"
                  f"{self.steps_per_epoch}")

    def _restored_loss_sum(self, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
        """This process's loss sum of the epoch so far: its own when as many processes resume as saved (the
        epoch's loss then sums exactly as without the interruption), else the mean over the saving processes,
        which gives every process count the same epoch loss."""
        sums = tensors.get("loop.loss_sums")
        if sums is not None and len(sums) == self.world:
            return sums[distributed.rank()].to(self.device)
        return tensors["loop.loss_sum"].to(self.device)

    def check_finite(self) -> None:
        """In "stop" mode, raise :class:`NonFiniteLossError` if any update so far was non-finite (any process)."""
        if self.options.on_nonfinite == "stop" and distributed.any_process(self.bad_steps > 0):
            saved = self.checkpoints.last_saved if self.checkpoints else None
            last = f"; last good checkpoint: {saved}" if saved else ""
            raise NonFiniteLossError(f"{self.options.tag}: non-finite loss or gradients in epoch {self.pos.epoch} "
                                     f"(before step {self.pos.step}); stopping this run{last}. Lower the learning "
                                     "rate, or set train.on_nonfinite=skip to skip such steps")

    def save(self, reason: str = "") -> None:
        """Write a checkpoint (when the stage keeps them), never of a state a non-finite update has touched."""
        if self.checkpoints is None:
            return
        self.check_finite()
        path = self.checkpoints.save(*self.snapshot())
        if reason:
            self._log(f"checkpoint {path} ({reason})")

    def stop_agreed(self, step: int | None = None) -> bool:
        """A stop was requested (in any process: they stop together, at a step where all of them ask)."""
        if self.world == 1:
            return stop_requested()
        if step is not None and step % STOP_POLL_STEPS:
            return False
        return distributed.any_process(stop_requested())

    def interrupt(self) -> NoReturn:
        """Checkpoint and raise :class:`RunInterrupted` (a stop was agreed)."""
        self.save("stop requested")
        raise RunInterrupted(self.checkpoints.last_saved if self.checkpoints else None)

    # -- steps

    def batch_loss(self, idx: torch.Tensor) -> torch.Tensor:
        """The loss of one batch; under torchrun of this process's rows, weighted so that DDP's mean is the batch's."""
        with autocast(self.device, self.options.precision):
            if self.world == 1:
                return self.step_loss(idx)
            start_row, stop_row = distributed.share_bounds(len(idx))
            with distributed.batch_share(start_row, stop_row, len(idx)):
                return self.step_loss(idx[start_row:stop_row]) * ((stop_row - start_row) * self.world / len(idx))

    def update(self, loss: torch.Tensor, i: int) -> bool:
        """Backward and the optimizer step, or (in "skip" mode) no step for a non-finite batch; True if applied."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        ok = _grads_finite(self.params, loss)
        skip = self.options.on_nonfinite == "skip"
        if skip and distributed.any_process(~ok):
            self.result.skipped_steps += 1
            self._log(f"WARNING: non-finite loss or gradients at epoch {self.pos.epoch} step {i + 1}; update skipped "
                      f"({self.result.skipped_steps} so far)")
            return False
        self.optimizer.step()
        if self.options.after_step is not None:
            self.options.after_step()
        if not skip:
            self.bad_steps += ~ok  # counted on the device, read by check_finite
        self.loss_sum += loss.detach()
        self.finite_steps += 1
        return True

    def advance_schedule(self, applied: bool) -> None:
        """Step the learning-rate schedule: it follows the data, also past a skipped update."""
        with warnings.catch_warnings():
            if not applied:
                warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)`")
            self.scheduler.step()

    def step(self, i: int, idx: torch.Tensor) -> None:
        """Batch ``i`` of the epoch: one update, then the stop or the checkpoint that may be due."""
        loss = self.batch_loss(idx)
        applied = self.update(loss, i)
        self.advance_schedule(applied)
        self.pos.step += 1
        self.pos.step_in_epoch = i + 1
        if self.stop_agreed(self.pos.step):
            self.interrupt()
        mid_epoch = self.pos.step_in_epoch < self.steps_per_epoch  # the epoch's end has its own checkpoint
        if self.checkpoints is not None and mid_epoch and self.checkpoints.due(self.pos.step):
            self.save()
        if mid_epoch and time.perf_counter() - self.last_progress >= PROGRESS_SECONDS:
            self.log_progress()

    def log_progress(self) -> None:
        """A line inside a long epoch: the step, the epoch's running loss, and the estimate of the stage's time
        left (the epoch's end logs its own)."""
        self.last_progress = time.perf_counter()
        done, total = self.pos.step, self.schedule.epochs * self.steps_per_epoch
        elapsed, loss = self.elapsed(), float(self.loss_sum) / max(1, int(self.finite_steps))
        # this process's own pace: after a resume, elapsed also holds the time before it, for steps not made here
        eta = (time.perf_counter() - self.start) / max(1, done - self.first_step) * (total - done)
        self._log(f"epoch {self.pos.epoch}/{self.schedule.epochs} step {self.pos.step_in_epoch}/"
                  f"{self.steps_per_epoch} loss {loss:.4f} [{elapsed:.0f}s, eta {eta:.0f}s]")

    # -- epochs

    def run_epoch(self) -> None:
        """The position's epoch: its batches in its data order, past those done before a resume."""
        generator = self.options.generator
        generator.set_state(self.pos.order_state)
        batches = iterate_batches(self.num_items, self.schedule.batch_size, generator, drop_last=self.drop_last)
        for i, idx in enumerate(batches):
            if i >= self.pos.step_in_epoch:
                self.step(i, idx)

    def epoch_loss(self, epoch: int) -> float:
        """The epoch's mean training loss over processes (one host read); raises when it is not finite."""
        self.check_finite()
        n = int(self.finite_steps)
        if n == 0:
            raise NonFiniteLossError(f"{self.options.tag}: every update of epoch {epoch} was skipped (non-finite "
                                     "loss or gradients); stopping this run")
        mean_loss = float(distributed.all_sum(self.loss_sum)) / self.world / n
        if not math.isfinite(mean_loss):
            raise NonFiniteLossError(f"{self.options.tag}: training loss is {mean_loss} at epoch {epoch}; "
                                     "stopping this run")
        return mean_loss

    def metrics(self, epoch: int, mean_loss: float) -> dict:
        """The stage's metrics of the epoch (``on_epoch_end``: validation, model selection)."""
        return {} if self.options.on_epoch_end is None else self.options.on_epoch_end(epoch, mean_loss)

    def record(self, epoch: int, mean_loss: float, metrics: dict, elapsed: float) -> dict:
        """The epoch's history record: its loss, the stage's metrics, the time so far and the skipped steps."""
        record = {"epoch": epoch, "train_loss": round(mean_loss, 6)}
        record.update(metrics)
        record["seconds"] = round(elapsed, 2)
        if self.result.skipped_steps:
            record["skipped_steps"] = self.result.skipped_steps
        return record

    def log_epoch(self, record: dict, mean_loss: float, elapsed: float) -> None:
        """The epoch's log line: loss, float metrics, time and the estimate of the time left."""
        epoch, epochs = record["epoch"], self.schedule.epochs
        eta = elapsed / epoch * (epochs - epoch)
        extras = " ".join(f"{k} {v:.4f}" for k, v in record.items()
                          if k not in ("epoch", "train_loss", "seconds") and isinstance(v, float))
        self._log(f"epoch {epoch}/{epochs} loss {mean_loss:.4f} {extras} [{elapsed:.0f}s, eta {eta:.0f}s]")
        self.last_progress = time.perf_counter()  # a progress line only when no line came for a while

    def end_epoch(self, epoch: int) -> None:
        """Close the epoch: record it, move to the next one, log, then stop or checkpoint if due."""
        mean_loss = self.epoch_loss(epoch)
        metrics = self.metrics(epoch, mean_loss)
        elapsed = self.elapsed()
        record = self.record(epoch, mean_loss, metrics, elapsed)
        self.result.history.append(record)
        self.pos = _Position(epoch + 1, 0, self.pos.step, self.options.generator.get_state())
        self.loss_sum, self.finite_steps = self._epoch_sums()
        self.log_epoch(record, mean_loss, elapsed)
        more = epoch < self.schedule.epochs
        if self.stop_agreed() and more:  # asked at every epoch's end: under torchrun it is a collective
            self.interrupt()
        if self.checkpoints is not None and more and self.checkpoints.due(self.pos.step, epoch):
            self.save()

    def run(self) -> TrainResult:
        """Train to the last epoch, from the start (checkpointed) or from ``resume``."""
        if self.options.resume is not None:
            self.restore(self.options.resume)
        else:
            self.pos.order_state = self.options.generator.get_state()
            self.save()  # the stage-start checkpoint
        while self.pos.epoch <= self.schedule.epochs:
            epoch = self.pos.epoch
            self.run_epoch()
            self.end_epoch(epoch)
        self.result.steps = self.pos.step
        self.result.seconds = self.elapsed()
        return self.result


def _param_groups(params: list[torch.nn.Parameter | dict]) -> list[dict]:
    """Optimizer groups: the given group dicts, after one group of the plain parameters (if any)."""
    groups = [g for g in params if isinstance(g, dict)]
    plain = [p for p in params if not isinstance(p, dict)]
    if plain:
        groups.insert(0, {"params": plain})
    return groups


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
    if epochs == 0:
        return TrainResult()
    schedule = Schedule(epochs, batch_size, lr, weight_decay, warmup_epochs, betas)
    options = LoopOptions(schedule, generator, on_epoch_end=on_epoch_end, after_step=after_step,
                          generators=generators or {}, checkpoints=checkpoints, resume=resume, extra=extra,
                          on_nonfinite=on_nonfinite, precision=precision, log=log, tag=tag)
    return TrainingLoop(params, step_loss, num_items, options).run()
