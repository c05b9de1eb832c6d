"""Image files as the uint8 arrays the tool keeps: a header pass that finds missing and unreadable files and
plans one stored shape, then decoding with the conversions a folder of mixed files needs (grey and colour,
more than 8 bits per pixel, several sizes), each said once."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tppeft import ranks
from tppeft.data.medmnist import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm")
# PIL modes read as colour; every other 8-bit mode ("L", "LA", "1") is grey.
COLOUR_MODES = frozenset({"RGB", "RGBA", "RGBX", "RGBa", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV"})
ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "PA"})
SHOWN = 3  # files named in an error message about many


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def is_deep(mode: str) -> bool:
    """More than 8 bits per pixel: 16-bit ("I;16*") and 32-bit integer ("I") or float ("F") grey."""
    return mode.startswith("I") or mode == "F"


def named(files: Sequence[Path | str], root: Path | None = None) -> str:
    """The first few of ``files`` (relative to ``root`` when inside it) and how many more."""
    def show(f: Path | str) -> str:
        f = Path(f)
        return str(f.relative_to(root)) if root is not None and f.is_relative_to(root) else str(f)

    text = ", ".join(show(f) for f in files[:SHOWN])
    return text + (f" and {len(files) - SHOWN} more" if len(files) > SHOWN else "")


@dataclass(frozen=True)
class Header:
    """What an image file says before it is decoded."""

    mode: str
    height: int
    width: int


def _header(file: Path) -> Header | None:
    from PIL import Image

    try:
        with Image.open(file) as im:
            return Header(im.mode, im.height, im.width)
    except (OSError, ValueError, SyntaxError):  # PIL's errors for files that are not images it reads
        return None


def probe(files: Sequence[Path], source: Path) -> list[Header]:
    """The header of every file; missing or unreadable files are one :class:`DataError` naming the first few."""
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise DataError(f"{source}: {len(missing)} image file(s) do not exist: {named(missing, source_root(source))}")
    with ThreadPoolExecutor(_workers()) as pool:
        headers = list(pool.map(_header, files))
    bad = [f for f, h in zip(files, headers, strict=True) if h is None]
    if bad:
        raise DataError(f"{source}: {len(bad)} file(s) cannot be read as images: {named(bad, source_root(source))}")
    return headers  # type: ignore[return-value]


def source_root(source: Path) -> Path:
    return source if source.is_dir() else source.parent


@dataclass(frozen=True)
class Plan:
    """The stored form of every image: channels (1 grey, 3 colour), height and width; and what it took."""

    channels: int
    height: int
    width: int
    notes: list[str] = field(default_factory=list)


def plan(headers: Sequence[Header], size: int | None) -> Plan:
    """One stored shape for all images: colour if any image is, their common size, or ``size`` square (else the
    most common size) when they differ. ``notes`` say each conversion this takes, once."""
    colour = sum(h.mode in COLOUR_MODES for h in headers)
    channels = 3 if colour else 1
    notes = []
    if 0 < colour < len(headers):
        notes.append(f"{len(headers) - colour} grey image(s) replicated to 3 channels (the data mixes grey and "
                     "colour)")
    alpha = sum(h.mode in ALPHA_MODES for h in headers)
    if alpha:
        notes.append(f"{alpha} image(s) with transparency: alpha dropped")
    deep = sum(is_deep(h.mode) for h in headers)
    if deep:
        notes.append(f"{deep} image(s) of more than 8 bits per pixel scaled to 0..255, each by its own minimum and "
                     "maximum")
    sizes = Counter((h.height, h.width) for h in headers)
    if len(sizes) == 1:
        (height, width), = sizes
    else:
        height, width = (size, size) if size else sizes.most_common(1)[0][0]
        sides = sorted(s for hw in sizes for s in hw)
        notes.append(f"images of {len(sizes)} sizes (sides {sides[0]}..{sides[-1]} px) resized to "
                     f"{height}x{width} on reading (bilinear, antialiased)")
    return Plan(channels, height, width, notes)


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """Deep pixels to 0..255 by the image's own range (a constant image becomes 0)."""
    arr = arr.astype(np.float64)
    lo, hi = float(arr.min()), float(arr.max())
    if hi <= lo:
        return np.zeros(arr.shape, np.uint8)
    return np.rint((arr - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def _resize(arr: np.ndarray, height: int, width: int) -> np.ndarray:
    """(C, H, W) uint8 to (C, height, width) with torch's antialiased bilinear resize, as batches are resized."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.require(arr, requirements=["C", "W"]))[None].float()  # a decoded image may be read-only
    y = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
    return y[0].round_().clamp_(0, 255).to(torch.uint8).numpy()


def decode(file: Path, target: Plan) -> np.ndarray:
    """One image as (C, H, W) uint8 in the planned form."""
    from PIL import Image

    with Image.open(file) as im:
        if is_deep(im.mode):
            arr = _to_uint8(np.asarray(im))
        else:
            arr = np.asarray(im.convert("RGB" if target.channels == 3 and im.mode in COLOUR_MODES else "L"))
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    if arr.shape[0] != target.channels:
        arr = np.repeat(arr, target.channels, axis=0)
    if arr.shape[1:] != (target.height, target.width):
        arr = _resize(arr, target.height, target.width)
    return arr


def read_into(files: Sequence[Path], target: Plan, out: np.ndarray, source: Path) -> None:
    """Decode ``files`` into ``out[i]`` (an array or a memory map, (N, C, H, W) uint8); files that fail to
    decode are one :class:`DataError` naming the first few, after all were tried."""
    def one(i: int) -> Path | None:
        try:
            out[i] = decode(files[i], target)
        except (OSError, ValueError, SyntaxError):  # truncated or corrupt data behind a good header
            return files[i]
        return None

    with ThreadPoolExecutor(_workers()) as pool:  # PIL decodes outside the GIL
        bad = [f for f in pool.map(one, range(len(files))) if f is not None]
    if bad:
        raise DataError(f"{source}: {len(bad)} file(s) cannot be decoded: {named(bad, source_root(source))}")


def _workers() -> int:
    return max(1, min(8, ranks.cores()))
