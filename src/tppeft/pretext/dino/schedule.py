"""DINO's settings that change over the TPP stage, by applied step: the teacher temperature's warm-up, the EMA
momentum's cosine towards its end value, and the prototype layer frozen at the start. Torch-free."""

from __future__ import annotations

import math
from dataclasses import dataclass

from tppeft.pretext.dino.config import DinoConfig


@dataclass(frozen=True)
class DinoSchedule:
    """The values of ``cfg``'s scheduled settings at each step of a stage of ``total_steps`` steps."""

    cfg: DinoConfig
    steps_per_epoch: int
    total_steps: int

    def teacher_temp(self, step: int) -> float:
        """Linear from ``warmup_teacher_temp`` to ``teacher_temp`` over the warm-up, then ``teacher_temp``."""
        d = self.cfg
        warm = d.teacher_temp_warmup_epochs * self.steps_per_epoch
        if d.warmup_teacher_temp is None or step >= warm:
            return d.teacher_temp
        return d.warmup_teacher_temp + (d.teacher_temp - d.warmup_teacher_temp) * step / warm

    def momentum(self, step: int) -> float:
        """``momentum`` at the first step, ``momentum_end`` at the last, along a half cosine between."""
        d = self.cfg
        if d.momentum_end is None:
            return d.momentum
        t = min(step / max(1, self.total_steps - 1), 1.0)
        return d.momentum_end - (d.momentum_end - d.momentum) * (math.cos(math.pi * t) + 1) / 2

    def last_layer_frozen(self, step: int) -> bool:
        return step < self.cfg.freeze_last_layer_epochs * self.steps_per_epoch


def describe_schedule(d: DinoConfig) -> str:
    """The scheduled settings in words, for the log; empty when nothing is scheduled."""
    parts = []
    if d.warmup_teacher_temp is not None:
        parts.append(f"teacher temperature {d.warmup_teacher_temp} -> {d.teacher_temp} over "
                     f"{_epochs(d.teacher_temp_warmup_epochs)}")
    if d.momentum_end is not None:
        parts.append(f"EMA momentum {d.momentum} -> {d.momentum_end} (cosine)")
    if d.freeze_last_layer_epochs:
        parts.append(f"prototypes frozen for {_epochs(d.freeze_last_layer_epochs)}")
    return ", ".join(parts)


def _epochs(n: float) -> str:
    return f"{n:g} epoch{'s' * (n != 1)}"
