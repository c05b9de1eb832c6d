"""Reader of image folders in torchvision's ``ImageFolder`` convention: ``DIR/{train,val,test}/<class>/*`` (a
split folder that is missing is drawn from the training images by ``data.split``) or ``DIR/<class>/*`` (every
split drawn). Class names, sorted, are the labels; files are listed as ``ImageFolder`` lists them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tppeft.data.detect import SPLIT_FOLDERS, split_folders
from tppeft.data.images import is_image, named
from tppeft.data.listing import POOL, Listing
from tppeft.data.medmnist import SPLITS, DataError, where


def class_folders(folder: Path) -> list[str]:
    return sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith((".", "_")))


def _files(folder: Path, class_to_idx: dict[str, int]) -> list[tuple[str, int]]:
    from torchvision.datasets.folder import make_dataset

    def visible_image(path: str) -> bool:  # not in a hidden folder (.ipynb_checkpoints) and not a hidden file
        return is_image(Path(path)) and not any(p.startswith(".") for p in Path(path).relative_to(folder).parts)

    return make_dataset(str(folder), class_to_idx, is_valid_file=visible_image, allow_empty=True)


def read_image_folder(root: str | Path) -> Listing:
    """The files, labels and given splits of the image folder ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder '{root}' does not exist{where(root)}; set data.path (--set data.path=PATH)")
    splits = split_folders(root)
    if splits and "train" not in splits:
        raise DataError(f"{root}: split folders {sorted(d.name for d in splits.values())} but no "
                        f"{'/'.join(SPLIT_FOLDERS['train'])} folder; the training split must be given")
    parts = splits or {"train": root}
    classes = class_folders(parts["train"])
    if not classes:
        raise DataError(f"{parts['train']}: no class folders; images go in <class>/ sub-folders (image folder layout)")
    class_to_idx = {c: i for i, c in enumerate(classes)}
    strangers = [f"{d.name}/{c}" for s, d in parts.items() if s != "train" for c in class_folders(d)
                 if c not in class_to_idx]
    if strangers:
        raise DataError(f"{root}: class folder(s) not in the training split: {named(strangers)}; every label needs "
                        "training images")
    files, labels, split, empty = [], [], [], []
    for s, d in parts.items():
        found = _files(d, {c: class_to_idx[c] for c in class_folders(d)})
        counts = np.bincount([i for _, i in found], minlength=len(classes))
        empty += [f"{d.name}/{c}" if splits else c for c in class_folders(d) if counts[class_to_idx[c]] == 0]
        files += [Path(f) for f, _ in found]
        labels += [i for _, i in found]
        split += [SPLITS.index(s) if splits else POOL] * len(found)
    if empty:
        raise DataError(f"{root}: empty class folder(s) with no image: {named(empty)}")
    missing = tuple(s for s in ("val", "test") if s not in parts)
    split_arr = np.array(split, np.int64)
    if splits and missing:
        split_arr[split_arr == SPLITS.index("train")] = POOL  # the missing splits are drawn from train
    return Listing(root.name, root, files, np.array(labels, np.int64), classes, split_arr, missing)
