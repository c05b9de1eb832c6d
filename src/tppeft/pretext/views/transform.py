"""Batched multi-view transform for view-based pretext tasks (DINO, SimCLR): random resized crops at two
scales, flips and a light intensity jitter suited to grey medical images (brightness, contrast, gamma; no
colour jitter, solarisation or heavy blur, which change what a grey ultrasound or X-ray image shows).

All views of a batch come from a few tensor ops on its own device, with randomness from one
``torch.Generator``: the same generator state gives the same views.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tppeft.data import augment_batch
from tppeft.pretext.views.config import ViewsConfig


def _uniform(n: int, low: float, high: float, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    u = torch.rand(n, 1, 1, 1, generator=generator, device=generator.device).to(device)
    return low + (high - low) * u


def intensity_jitter(images: torch.Tensor, generator: torch.Generator, brightness: float = 0.2,
                     contrast: float = 0.2, gamma: float = 0.2) -> torch.Tensor:
    """Per-image gamma, contrast and brightness jitter of images in [0, 1]; the result is clamped to [0, 1].
    The same factors apply to every channel, so a grey image stays grey."""
    n, dev = images.shape[0], images.device
    g = torch.exp(_uniform(n, -gamma, gamma, generator, dev))
    c = _uniform(n, 1 - contrast, 1 + contrast, generator, dev)
    b = _uniform(n, -brightness, brightness, generator, dev)
    x = images.clamp(0, 1).pow(g)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((x - mean) * c + mean + b).clamp(0, 1)


class MultiCropViews(nn.Module):
    """``global_views`` crops at the input size and ``cfg.local_crops`` smaller crops of every image.

    Works on normalised model input: views are cut from the images brought back to [0, 1] with ``mean`` and
    ``std``, jittered, and normalised again.
    """

    def __init__(self, cfg: ViewsConfig, mean: torch.Tensor, std: torch.Tensor, global_views: int = 2,
                 local_views: int | None = None):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.global_views = global_views
        self.local_views = cfg.local_crops if local_views is None else local_views

    def _crops(self, raw: torch.Tensor, count: int, scale: tuple[float, float], size: int,
               generator: torch.Generator) -> list[torch.Tensor]:
        if count == 0:
            return []
        c = self.cfg
        # One call for all `count` crops of the batch; augment_batch keeps the input size, so smaller crops
        # are then resized (antialiased) to `size`.
        crops = augment_batch(raw.repeat(count, 1, 1, 1), generator, scale, hflip=c.hflip, vflip=c.vflip)
        if crops.shape[-1] != size:
            crops = F.interpolate(crops, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        crops = intensity_jitter(crops, generator, c.brightness, c.contrast, c.gamma)
        return list(((crops - self.mean) / self.std).chunk(count))

    def forward(self, images: torch.Tensor, generator: torch.Generator) -> list[torch.Tensor]:
        """Views of a normalised batch (B, C, H, W): the global views (B, C, H, W) first, then the local
        ones (B, C, s, s) with s = ``cfg.local_size``."""
        raw = images * self.std + self.mean
        views = self._crops(raw, self.global_views, self.cfg.global_scale, images.shape[-1], generator)
        return views + self._crops(raw, self.local_views, self.cfg.local_scale, self.cfg.local_size, generator)
