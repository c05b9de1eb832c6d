"""Batched random token masks and patch layouts."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_keep_indices(
    batch: int, tokens: int, mask_ratio: float, generator: torch.Generator, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image, indices of the kept tokens (B, keep) and the permutation that restores order (B, L)."""
    keep = max(1, int(round(tokens * (1 - mask_ratio))))
    noise = torch.rand(batch, tokens, generator=generator, device=generator.device).to(device)
    ids_shuffle = noise.argsort(dim=1)
    return ids_shuffle[:, :keep], ids_shuffle.argsort(dim=1)


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, L, C*p*p), each patch ordered (channel, row, column) as ``F.unfold`` gives."""
    return F.unfold(images, patch, stride=patch).transpose(1, 2)
