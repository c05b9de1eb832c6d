"""Batched tensor transforms: they run on whatever device holds the batch, with no per-image Python."""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

from tppeft.distributed import per_item


def float_pixels(images: torch.Tensor) -> torch.Tensor:
    """Stored pixels as float in [0, 1]: uint8 divided by 255, float returned as it is."""
    return images.float().div_(255.0) if images.dtype == torch.uint8 else images


def resize_images(images: torch.Tensor, size: int, chunk: int = 1024) -> torch.Tensor:
    """(N, C, H, W) uint8 or float pixels as float in [0, 1] at ``size`` x ``size`` (bilinear, antialiased)."""
    images = float_pixels(images)
    if images.shape[-2:] == (size, size):
        return images
    out = [F.interpolate(images[i:i + chunk], size=(size, size), mode="bilinear", align_corners=False,
                         antialias=True) for i in range(0, len(images), chunk)]
    return torch.cat(out).clamp_(0, 1)


def input_pixels(images: torch.Tensor, size: int | None) -> torch.Tensor:
    """Stored pixels (..., C, H, W) as the model's input: float in [0, 1] at ``size`` (kept without one).

    Runs per batch on the batch's device, so that a dataset can stay there in its stored form (uint8 at
    the file's resolution). Every image is resized on its own, so a batch gets exactly the values that
    resizing the whole split at once would give.
    """
    if size is None or images.shape[-2:] == (size, size):
        return float_pixels(images)
    flat = resize_images(images.flatten(0, images.dim() - 4), size)
    return flat.view(*images.shape[:-2], size, size)


def resize_masks(masks: torch.Tensor, size: int, chunk: int = 1024) -> torch.Tensor:
    """Nearest-neighbour resize of (N, H, W) integer masks to ``size`` x ``size`` (class ids stay class ids)."""
    if masks.shape[-2:] == (size, size):
        return masks
    out = [F.interpolate(masks[i:i + chunk, None].float(), size=(size, size), mode="nearest-exact")[:, 0]
           for i in range(0, len(masks), chunk)]
    return torch.cat(out).to(masks.dtype)


def to_model_input(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Replicate grey images to 3 channels and normalise as ``(x - mean) / std``."""
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    return (images - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)


def random_crop_grid(
    images: torch.Tensor,
    generator: torch.Generator,
    scale: tuple[float, float] = (0.6, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    hflip: bool = True,
    vflip: bool = False,
) -> torch.Tensor:
    """Sampling grid of a random resized crop and flips, one per image of the (N, C, H, W) batch."""
    n = images.shape[0]
    dev = images.device
    u = per_item(n, lambda m: torch.rand(m, 4, generator=generator, device=generator.device)).to(dev)
    area = scale[0] + (scale[1] - scale[0]) * u[:, 0]
    log_r = torch.log(torch.tensor(ratio, device=dev))
    aspect = torch.exp(log_r[0] + (log_r[1] - log_r[0]) * u[:, 1])
    w = torch.sqrt(area * aspect).clamp(max=1.0)  # crop size as a fraction of the side
    h = torch.sqrt(area / aspect).clamp(max=1.0)
    cx = (1 - w) * (2 * u[:, 2] - 1)  # centre so the crop stays inside the image
    cy = (1 - h) * (2 * u[:, 3] - 1)
    flips = per_item(n, lambda m: torch.rand(m, 2, generator=generator, device=generator.device)).to(dev)
    sx = torch.where((flips[:, 0] < 0.5) & hflip, -w, w)
    sy = torch.where((flips[:, 1] < 0.5) & vflip, -h, h)
    theta = torch.zeros(n, 2, 3, device=dev)
    theta[:, 0, 0], theta[:, 0, 2] = sx, cx
    theta[:, 1, 1], theta[:, 1, 2] = sy, cy
    return F.affine_grid(theta, list(images.shape), align_corners=False)


def augment_batch(
    images: torch.Tensor,
    generator: torch.Generator,
    scale: tuple[float, float] = (0.6, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    hflip: bool = True,
    vflip: bool = False,
    masks: torch.Tensor | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Random resized crop (one affine grid per image) and flips, for a whole batch at once.

    Written with ``affine_grid``/``grid_sample`` rather than torchvision's per-image transforms so that a
    batch is augmented in one call on its own device. With ``masks`` (N, H, W) integer class ids, the same
    grid moves the masks too, sampled nearest-neighbour so that they stay class ids aligned with the
    image; the pair ``(images, masks)`` is returned.
    """
    grid = random_crop_grid(images, generator, scale, ratio, hflip, vflip)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if masks is None:
        return out
    moved = F.grid_sample(masks[:, None].float(), grid, mode="nearest", padding_mode="border", align_corners=False)
    return out, moved[:, 0].round().to(masks.dtype)


def iterate_batches(
    n: int, batch_size: int, generator: torch.Generator | None = None, drop_last: bool = False
) -> Iterator[torch.Tensor]:
    """Index batches over ``n`` items: shuffled with ``generator``, in order without one."""
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    stop = n - n % batch_size if drop_last and n >= batch_size else n
    for i in range(0, stop, batch_size):
        yield order[i:i + batch_size]
