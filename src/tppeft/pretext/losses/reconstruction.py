"""Pixel reconstruction on masked patches only.

- MSE: He et al., "Masked Autoencoders Are Scalable Vision Learners", CVPR 2022, arXiv:2111.06377.
- L1: Xie et al., "SimMIM: A Simple Framework for Masked Image Modeling", CVPR 2022, arXiv:2111.09886.
"""

from __future__ import annotations

from typing import Literal

import torch


def masked_patch_loss(pred: torch.Tensor, target: torch.Tensor, masked: torch.Tensor,
                      kind: Literal["mse", "l1"] = "mse") -> torch.Tensor:
    """Mean over masked patches (``masked`` (B, L) true) of the per-patch mean squared or absolute error
    between ``pred`` and ``target`` (B, L, patch_dim)."""
    diff = pred - target
    per_patch = (diff.pow(2) if kind == "mse" else diff.abs()).mean(-1)
    weight = masked.to(per_patch.dtype)
    return (per_patch * weight).sum() / weight.sum().clamp(min=1)
