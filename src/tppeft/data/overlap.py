"""Images two sets share: pixel for pixel, once both are at the model's input size (what ``pretext.data`` is checked
against, so that a run's validation and test images never reach its TPP stage), and as near-twins.

Keys find exact copies only (the same stored image, or the same resize of it); a differently resized or re-encoded
copy of an image is not one. Near-twins are found by thumbnails: two images whose 32x32 grey thumbnails, each
z-normalised, correlate at :data:`NEAR` or more (the same picture shifted a little, re-marked, re-scaled or
re-encoded, or a neighbouring frame or slice: checked by eye on BUSI and brain MRI; PneumoniaMNIST's only pairs
that high are its exact copies). Constant images (blank slices, padding) match nothing: they carry no image.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TypeVar

import torch
import torch.nn.functional as F

from tppeft.data.transforms import float_pixels, input_pixels

CHUNK = 512  # images brought to the input size at a time: a whole split at 224 px can be several GB as float
KEY_BYTES = 16
T = TypeVar("T")
THUMB = 32  # near-twins: the thumbnails' side
NEAR = 0.98  # and their correlation: BUSI's train/test twins (the same lesion, same frame) lie above, others below
MAX_PAIRS = 400_000_000  # image pairs compared at most (a few seconds on two cores); larger sets are not checked


def image_keys(images: torch.Tensor, size: int | None = None) -> list[bytes | None]:
    """A key per (N, C, H, W) image (stored pixels, brought to ``size`` as the model sees them): a digest of its
    8-bit levels, of one channel when all channels are equal, so that a grey image and its RGB copy match; None
    for a constant image."""
    keys: list[bytes | None] = []
    for start in range(0, len(images), CHUNK):
        levels = input_pixels(images[start:start + CHUNK], size).mul(255).round().to(torch.uint8).cpu()
        flat = levels.flatten(1)
        constant = (flat == flat[:, :1]).all(dim=1).tolist()
        grey = (levels == levels[:, :1]).flatten(1).all(dim=1).tolist()
        for image, c, g in zip(levels, constant, grey, strict=True):
            keys.append(None if c else hashlib.blake2b((image[:1] if g else image).numpy().tobytes(),
                                                       digest_size=KEY_BYTES).digest())
    return keys


def found_in(keys: list[bytes | None], others: list[bytes | None]) -> list[bool]:
    """For each of ``keys``' images: is it among ``others``' (a constant image never is)?"""
    known = {k for k in others if k is not None}
    return [k is not None and k in known for k in keys]


def count_in(keys: list[bytes | None], others: list[bytes | None]) -> int:
    """How many of ``keys``' images are among ``others``' (constant images never count)."""
    return sum(found_in(keys, others))


def _across(sets: dict[str, T], count: Callable[[T, T], int]) -> dict[str, int]:
    """``count(later, earlier)`` for each pair of ``sets`` (in their order), keyed "<later> in <earlier>"."""
    names = list(sets)
    return {f"{later} in {earlier}": count(sets[later], sets[earlier])
            for i, later in enumerate(names) for earlier in names[:i]}


def copies_across(keys: dict[str, list[bytes | None]]) -> dict[str, int]:
    """Per pair of splits (in ``keys``' order), how many images of the later one are copies of the earlier one's:
    ``{"val in train": 8, "test in train": 1, "test in val": 0}``."""
    return _across(keys, count_in)


def thumbnails(images: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) stored images as (N, 1024) grey 32x32 thumbnails, z-normalised to unit length, so that a dot
    product is a correlation; a constant image's is zero (no correlation with anything)."""
    out = []
    for start in range(0, len(images), CHUNK):
        x = float_pixels(images[start:start + CHUNK]).float().mean(1, keepdim=True)
        x = F.interpolate(x, size=(THUMB, THUMB), mode="bilinear", antialias=True, align_corners=False).flatten(1)
        x = x - x.mean(1, keepdim=True)
        norm = x.norm(dim=1, keepdim=True)
        out.append(torch.where(norm > 1e-6, x / norm.clamp_min(1e-6), torch.zeros_like(x)).cpu())
    return torch.cat(out) if out else torch.zeros(0, THUMB * THUMB)


def nearest(thumbs: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
    """For each of ``thumbs``, its largest correlation with one of ``others`` (0 when there are none)."""
    if not len(others):
        return torch.zeros(len(thumbs))
    return torch.cat([(thumbs[i:i + CHUNK] @ others.T).max(1).values for i in range(0, len(thumbs), CHUNK)]
                     or [torch.zeros(0)])


def near_copies_across(thumbs: dict[str, torch.Tensor], near: float = NEAR) -> dict[str, int]:
    """:func:`copies_across` for near-twins: per pair of splits, how many images of the later one have a near-twin
    among the earlier one's (:func:`thumbnails`; exact copies included)."""
    return _across(thumbs, lambda later, earlier: int((nearest(later, earlier) >= near).sum()))


def keys_bytes(keys: list[bytes | None]) -> bytes:
    """The keys of the images that have one, one after another: a file of them is a set of images."""
    return b"".join(k for k in keys if k is not None)


def keys_from_bytes(data: bytes) -> set[bytes]:
    """The set of keys that :func:`keys_bytes` wrote."""
    if len(data) % KEY_BYTES:
        raise ValueError(f"not a file of {KEY_BYTES}-byte image keys ({len(data)} bytes)")
    return {data[i:i + KEY_BYTES] for i in range(0, len(data), KEY_BYTES)}
