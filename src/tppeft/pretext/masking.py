"""Batched random token masks and patch layouts."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tppeft.distributed import per_item


def random_keep_indices(
    batch: int, tokens: int, mask_ratio: float, generator: torch.Generator, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image, indices of the kept tokens (B, keep) and the permutation that restores order (B, L)."""
    keep = max(1, int(round(tokens * (1 - mask_ratio))))
    noise = per_item(batch, lambda m: torch.rand(m, tokens, generator=generator, device=generator.device)).to(device)
    ids_shuffle = noise.argsort(dim=1)
    return ids_shuffle[:, :keep], ids_shuffle.argsort(dim=1)


# How the values of one patch are ordered in a patch vector: (channel, row, column) as ``F.unfold`` gives (the
# tool's own layout, b0's), or (row, column, channel) as MAE's own code and Hugging Face's ViTMAE order them.
PATCH_ORDERS = ("chw", "hwc")


def patchify(images: torch.Tensor, patch: int, order: str = "chw") -> torch.Tensor:
    """(B, C, H, W) -> (B, L, C*p*p), patches in row-major order, each patch vector in ``order``."""
    if order == "chw":
        return F.unfold(images, patch, stride=patch).transpose(1, 2)
    if order != "hwc":
        raise ValueError(f"patch order '{order}' is not one of {PATCH_ORDERS}")
    b, c, h, w = images.shape
    x = images.reshape(b, c, h // patch, patch, w // patch, patch).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(b, (h // patch) * (w // patch), patch * patch * c)


def patchify_volumes(volumes: torch.Tensor, patch: tuple[int, int, int]) -> torch.Tensor:
    """Grey (B, D, H, W) -> (B, L, pd*p*p) in the token order of a 3D ViT (depth, rows, columns), each patch
    ordered (slice, row, column)."""
    (b, d, h, w), (pd, ph, pw) = volumes.shape, patch
    x = volumes.reshape(b, d // pd, pd, h // ph, ph, w // pw, pw)
    return x.permute(0, 1, 3, 5, 2, 4, 6).reshape(b, -1, pd * ph * pw)


def patch_targets(vit: torch.nn.Module, images: torch.Tensor, order: str = "chw") -> torch.Tensor:
    """The pixel patches a masked-image task predicts for ``vit``'s tokens: (B, L, 3*p*p) of a 2D ViT's
    (B, 3, H, W) input (each patch in ``order``), (B, L, pd*p*p) of a 3D ViT's grey volumes (B, D, H, W)."""
    patch = vit.patch_embed.patch_size
    return patchify_volumes(images, patch) if len(patch) == 3 else patchify(images, patch[0], order)


def patch_dim(vit: torch.nn.Module) -> int:
    """Length of one pixel patch of ``vit``'s input: 3*p*p in 2D, pd*p*p for a 3D ViT's grey volumes."""
    patch = vit.patch_embed.patch_size
    return patch[0] * patch[1] * patch[2] if len(patch) == 3 else 3 * patch[0] ** 2


def mask_from_keep(keep: torch.Tensor, tokens: int) -> torch.Tensor:
    """Boolean mask (B, L), true where a token is hidden, from the kept indices (B, K)."""
    masked = torch.ones(keep.shape[0], tokens, dtype=torch.bool, device=keep.device)
    return masked.scatter(1, keep, False)


def normalised_patches(patches: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Each patch vector minus its mean, divided by sqrt(var + eps) (MAE's ``norm_pix_loss`` target)."""
    mean, var = patches.mean(-1, keepdim=True), patches.var(-1, keepdim=True)
    return (patches - mean) / (var + eps).sqrt()
