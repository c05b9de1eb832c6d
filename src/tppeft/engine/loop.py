"""The training loop shared by the TPP stage and the fine-tuning stage.

A stage differs only by its objective (``step_loss``) and its trainable set (``params``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from tppeft.data import iterate_batches

# Called after each epoch with (epoch, mean training loss); returns metrics to log (may be empty).
EpochEnd = Callable[[int, float], dict]


@dataclass
class TrainResult:
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    steps: int = 0


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
    """The loss became NaN or infinite; the run stops rather than writing invalid metrics."""


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
    log: Callable[[str], None] = print,
    tag: str = "",
) -> TrainResult:
    """AdamW with warm-up + cosine over ``epochs`` passes of shuffled index batches.

    ``params`` holds parameters (trained at ``lr``) and/or optimizer group dicts with their own ``lr``.
    ``step_loss(indices)`` computes the loss of one batch; the loop does the backward and the update.
    """
    result = TrainResult()
    if epochs == 0:
        return result
    groups = [g for g in params if isinstance(g, dict)]
    plain = [p for p in params if not isinstance(p, dict)]
    if plain:
        groups.insert(0, {"params": plain})
    every = [p for g in groups for p in g["params"]]
    fused = all(p.is_cuda for p in every)
    opt = torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay, betas=betas, fused=fused or None)
    steps_per_epoch, drop_last = epoch_steps(num_items, batch_size)
    total = epochs * steps_per_epoch
    warmup = int(round(warmup_epochs * steps_per_epoch))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, total, warmup))
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        loss_sum = torch.zeros((), device=every[0].device)
        n = 0
        for idx in iterate_batches(num_items, batch_size, generator, drop_last=drop_last):
            loss = step_loss(idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.detach()
            n += 1
        mean_loss = float(loss_sum) / n  # one host sync per epoch
        if not math.isfinite(mean_loss):
            raise NonFiniteLossError(f"{tag}: training loss is {mean_loss} at epoch {epoch}; stopping this run")
        result.steps += n
        record = {"epoch": epoch, "train_loss": round(mean_loss, 6)}
        if on_epoch_end is not None:
            record.update(on_epoch_end(epoch, mean_loss))
        elapsed = time.perf_counter() - start
        record["seconds"] = round(elapsed, 2)
        result.history.append(record)
        eta = elapsed / epoch * (epochs - epoch)
        extra = " ".join(f"{k} {v:.4f}" for k, v in record.items()
                         if k not in ("epoch", "train_loss", "seconds") and isinstance(v, float))
        log(f"{tag} epoch {epoch}/{epochs} loss {mean_loss:.4f} {extra} [{elapsed:.0f}s, eta {eta:.0f}s]")
    result.seconds = time.perf_counter() - start
    return result
