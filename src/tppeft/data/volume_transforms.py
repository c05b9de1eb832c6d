"""Batched transforms of whole volumes (N, D, H, W), on the device that holds them: resizing to a 3D backbone's
input, and the in-plane training augmentation shared by every slice of a volume and by its label volume."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tppeft.data.transforms import float_pixels, random_crop_grid


def resize_volumes(volumes: torch.Tensor, shape: tuple[int, int, int], chunk: int = 64) -> torch.Tensor:
    """(N, D, H, W) uint8 or float volumes as float in [0, 1] at ``shape`` (trilinear)."""
    volumes = float_pixels(volumes)
    if tuple(volumes.shape[1:]) == tuple(shape):
        return volumes
    out = [F.interpolate(volumes[i:i + chunk, None], size=shape, mode="trilinear", align_corners=False)[:, 0]
           for i in range(0, len(volumes), chunk)]
    return torch.cat(out).clamp_(0, 1)


def resize_label_volumes(labels: torch.Tensor, shape: tuple[int, int, int], chunk: int = 64) -> torch.Tensor:
    """Nearest-neighbour resize of (N, D, H, W) class-id volumes (class ids stay class ids)."""
    if tuple(labels.shape[1:]) == tuple(shape):
        return labels
    out = [F.interpolate(labels[i:i + chunk, None].float(), size=shape, mode="nearest-exact")[:, 0]
           for i in range(0, len(labels), chunk)]
    return torch.cat(out).to(labels.dtype)


def augment_volumes(volumes: torch.Tensor, labels: torch.Tensor, generator: torch.Generator,
                    scale: tuple[float, float] = (0.6, 1.0), hflip: bool = True,
                    vflip: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """One random resized in-plane crop and flip per volume, the same for every slice and for its label volume
    (sampled nearest-neighbour, so class ids stay class ids): 2D segmentation's augmentation, with depth as
    channels."""
    grid = random_crop_grid(volumes, generator, scale, hflip=hflip, vflip=vflip)
    out = F.grid_sample(volumes, grid, mode="bilinear", padding_mode="border", align_corners=False)
    moved = F.grid_sample(labels.float(), grid, mode="nearest", padding_mode="border", align_corners=False)
    return out, moved.round().to(labels.dtype)
