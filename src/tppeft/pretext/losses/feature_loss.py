"""Feature distillation: regress the frozen backbone's own features of the full image.

Targets are layer-normalised without affine, as in data2vec (Baevski et al., "data2vec: A General Framework
for Self-supervised Learning in Speech, Vision and Language", ICML 2022, arXiv:2202.03555); predicting a
frozen teacher's features from a masked view follows MaskDistill (Peng et al., "A Unified View of Masked
Image Modeling", arXiv:2210.10615).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F


def feature_distillation_loss(pred: torch.Tensor, target: torch.Tensor,
                              kind: Literal["mse", "cosine"] = "mse") -> torch.Tensor:
    """``pred``, ``target``: (B, N, D) token features; mean over tokens of MSE after layer norm, or 1 - cosine."""
    if kind == "cosine":
        return (1 - F.cosine_similarity(pred, target, dim=-1)).mean()
    d = target.shape[-1]
    return F.mse_loss(F.layer_norm(pred, (d,)), F.layer_norm(target, (d,)))
