"""A labelled list of image files — what the image-folder and CSV-manifest readers give — checked, split
(``data.split`` where the data has no split), and read into an :class:`ImageDataset` of uint8 images, in memory
or memory-mapped from ``data.cache``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tppeft.data.cache import cache_root, cached_images, should_cache
from tppeft.data.config import SplitConfig
from tppeft.data.images import named, plan, probe, read_into
from tppeft.data.medmnist import SPLITS, DataError, ImageDataset, Split, subset
from tppeft.data.split import check_groups, draw

POOL = -1  # split id of the images from which the missing splits are drawn


@dataclass
class Listing:
    """Image files with their labels and, where given, their split and group."""

    name: str
    source: Path  # the folder or CSV file, for messages
    files: list[Path]
    labels: np.ndarray  # (N,) class ids, or (N, L) 0/1 (multi-label)
    class_names: list[str]
    split: np.ndarray  # (N,) 0/1/2 = train/val/test as given, or POOL
    missing: tuple[str, ...] = ()  # splits drawn from the POOL images by data.split (their rest is train)
    groups: np.ndarray | None = None  # (N,) group of each image (patient, exam), when known

    @property
    def multilabel(self) -> bool:
        return self.labels.ndim == 2


def assign_splits(listing: Listing, cfg: SplitConfig, log: Callable[[str], None]) -> np.ndarray:
    """The split of every image: as given, and for the POOL images as ``data.split`` draws them."""
    split = listing.split.copy()
    pool = np.flatnonzero(split == POOL)
    if not listing.missing:
        return split
    fractions = [getattr(cfg, s) for s in listing.missing]
    groups = None if listing.groups is None else listing.groups[pool]
    drawn = draw(listing.labels[pool], fractions, cfg.seed, groups)
    targets = np.array([SPLITS.index("train")] + [SPLITS.index(s) for s in listing.missing])
    split[pool] = targets[drawn]
    made = ", ".join(f"{s} {cfg_value:.0%}" for s, cfg_value in zip(listing.missing, fractions, strict=True))
    whole = "" if groups is None else f", whole groups of '{cfg.group_by or 'group'}'"
    of = "the images" if len(pool) == len(split) else "the training images"
    log(f"data: split made by data.split ({made} of {of}, stratified by label{whole}, seed {cfg.seed})")
    return split


def _check_classes(listing: Listing, split: np.ndarray) -> None:
    """Every class has images, and every class of val/test has training images."""
    labels = listing.labels
    if labels.ndim == 1 and len(listing.class_names) < 2:
        raise DataError(f"{listing.source}: a single class ({named(listing.class_names)}); classification needs "
                        "at least two")
    present = [(labels[split == i] if labels.ndim == 1 else labels[split == i].T) for i in range(3)]
    if labels.ndim == 1:
        counts = np.stack([np.bincount(p, minlength=len(listing.class_names)) for p in present])
    else:
        counts = np.stack([p.sum(axis=1) for p in present])
    empty = [n for n, c in zip(listing.class_names, counts.sum(0), strict=True) if c == 0]
    if empty:
        raise DataError(f"{listing.source}: empty class(es) with no image: {named(empty)}")
    unseen = [f"'{n}' ({', '.join(f'{SPLITS[i]} {c[i]}' for i in (1, 2) if c[i])})"
              for n, c in zip(listing.class_names, counts.T, strict=True) if c[0] == 0]
    if unseen:
        raise DataError(f"{listing.source}: label(s) not in the training split: {named(unseen)}; every label "
                        "needs training images")
    for i, s in enumerate(SPLITS):
        if not (split == i).any():
            raise DataError(f"{listing.source}: the {s} split is empty")


def load_listing(listing: Listing, *, limit: int | None = None, size: int | None = None,
                 split_cfg: SplitConfig | None = None, cache: bool | str = "auto", cache_dir: str | None = None,
                 log: Callable[[str], None] = print) -> ImageDataset:
    """Check, split and read ``listing``; images are stored as uint8 (N, C, H, W) in one shape (see
    :func:`tppeft.data.images.plan`), each split a contiguous block (a view of the cache's memory map)."""
    split_cfg = split_cfg or SplitConfig()
    if listing.groups is None and split_cfg.group_by is not None and listing.missing:
        raise DataError(f"{listing.source}: data.split.group_by='{split_cfg.group_by}' needs a CSV manifest "
                        "with that column")
    split = assign_splits(listing, split_cfg, log)
    if listing.groups is not None:
        check_groups(split, listing.groups, str(listing.source))
    _check_classes(listing, split)
    order = []
    for i in range(len(SPLITS)):
        members = np.flatnonzero(split == i)
        order.append(members[subset(len(members), limit)])
    files = [listing.files[j] for part in order for j in part]
    target = plan(probe(files, listing.source), size)
    if target.notes:
        log("data: converted on reading: " + "; ".join(target.notes))
    shape = (len(files), target.channels, target.height, target.width)

    def fill(out: np.ndarray) -> None:
        read_into(files, target, out, listing.source)

    if should_cache(cache, int(np.prod(shape))):
        images = cached_images(files, target, cache_root(cache_dir), listing.name, fill, log)
    else:
        images = np.empty(shape, np.uint8)
        fill(images)
    labels = torch.from_numpy(listing.labels.astype(np.int64))
    splits, start = {}, 0
    for s, part in zip(SPLITS, order, strict=True):
        block = torch.from_numpy(images[start:start + len(part)])
        splits[s] = Split(block, labels[torch.from_numpy(part)])
        start += len(part)
    task = "multilabel" if listing.multilabel else "multiclass"
    return ImageDataset(listing.name, splits, task, len(listing.class_names), "classification",
                        class_names=list(listing.class_names))
