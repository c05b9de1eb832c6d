"""An exponential-moving-average teacher that shares every frozen weight with its student.

Only the student's trainable tensors (target parameters and pretext head) get EMA copies; the teacher is
run as the student module itself with those copies swapped in by ``torch.func.functional_call``, so the
frozen backbone is never duplicated and the student's own tensors are never written to (an in-place swap
of the real parameters would bump their autograd version counters and break the student's backward when
the teacher runs after the student's forward).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call


class EMATeacher(nn.Module):
    """EMA copies of the trainable parameters of ``student``, taken when the teacher is built."""

    def __init__(self, student: nn.Module):
        super().__init__()
        self.names = [n for n, p in student.named_parameters() if p.requires_grad]
        params = dict(student.named_parameters())
        for i, name in enumerate(self.names):
            self.register_buffer(f"ema{i}", params[name].detach().clone())

    def shadow(self) -> dict[str, torch.Tensor]:
        """Parameter name (relative to the student) -> its EMA tensor."""
        return {name: getattr(self, f"ema{i}") for i, name in enumerate(self.names)}

    @torch.no_grad()
    def update(self, student: nn.Module, momentum: float) -> None:
        """teacher = momentum * teacher + (1 - momentum) * student, for the tracked tensors only."""
        params = dict(student.named_parameters())
        for name, ema in self.shadow().items():
            ema.lerp_(params[name].detach(), 1 - momentum)

    @torch.no_grad()
    def forward(self, student: nn.Module, *args, **kwargs):
        """The student's forward with the EMA tensors in place of its trainable ones."""
        return functional_call(student, self.shadow(), args, kwargs)
