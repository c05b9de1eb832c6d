"""DINO's self-distillation loss with centring and sharpening.

Caron et al., "Emerging Properties in Self-Supervised Vision Transformers", ICCV 2021, arXiv:2104.14294.
The teacher's output is centred (a running mean of its outputs is subtracted, which keeps one prototype
from dominating) and sharpened (a low temperature, which keeps the output from becoming uniform); the
student's softmax at a higher temperature is trained to match it across different views of an image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DINOLoss(nn.Module):
    def __init__(self, out_dim: int, student_temp: float = 0.1, teacher_temp: float = 0.04,
                 center_momentum: float = 0.9):
        super().__init__()
        self.student_temp = student_temp
        self.teacher_temp = teacher_temp
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(1, out_dim))

    def forward(self, teacher_out: torch.Tensor, student_out: torch.Tensor) -> torch.Tensor:
        """``teacher_out`` (T, B, K) for the T global views, ``student_out`` (S, B, K) for all S >= T views,
        the global ones first. Cross-entropy averaged over every (teacher view, other student view) pair."""
        t = F.softmax((teacher_out - self.center) / self.teacher_temp, dim=-1)
        s = F.log_softmax(student_out / self.student_temp, dim=-1)
        ce = -torch.einsum("tbk,sbk->tsb", t, s).mean(-1)  # (T, S): mean over images
        same_view = torch.eye(ce.shape[0], ce.shape[1], dtype=torch.bool, device=ce.device)
        loss = ce.masked_fill(same_view, 0).sum() / (ce.numel() - ce.shape[0])
        if self.training:
            self.update_center(teacher_out)
        return loss

    @torch.no_grad()
    def update_center(self, teacher_out: torch.Tensor) -> None:
        batch_center = teacher_out.flatten(0, 1).mean(0, keepdim=True)
        self.center.mul_(self.center_momentum).add_(batch_center, alpha=1 - self.center_momentum)
