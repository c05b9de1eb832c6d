"""Reader for MedMNIST-format ``.npz`` files (``train_images``, ``train_labels``, ``val_images``, ...)."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

SPLITS = ("train", "val", "test")


class DataError(ValueError):
    """A data file that cannot be used; the message names the file and what was expected."""


@dataclass
class Split:
    """One split: images as float in [0, 1], shape (N, C, H, W) with C in {1, 3}; integer labels."""

    images: torch.Tensor
    labels: torch.Tensor  # (N,) class ids for multi-class, (N, L) 0/1 for multi-label

    def __len__(self) -> int:
        return self.images.shape[0]

    def to(self, device: torch.device | str) -> Split:
        return Split(self.images.to(device), self.labels.to(device))


@dataclass
class ImageDataset:
    """The three splits of one dataset and what its labels mean."""

    name: str
    splits: dict[str, Split]
    task: str  # "multiclass" (binary and ordinal included) or "multilabel"
    num_classes: int  # classes (multiclass) or labels (multilabel)

    def __getitem__(self, split: str) -> Split:
        return self.splits[split]

    def to(self, device: torch.device | str) -> ImageDataset:
        return ImageDataset(self.name, {k: v.to(device) for k, v in self.splits.items()}, self.task,
                            self.num_classes)


def _images_to_tensor(arr: np.ndarray, key: str, path: Path) -> torch.Tensor:
    if arr.ndim == 3:
        arr = arr[:, None]
    elif arr.ndim == 4 and arr.shape[-1] in (1, 3):
        arr = arr.transpose(0, 3, 1, 2)
    else:
        raise DataError(f"{path}: '{key}' has shape {arr.shape}; expected (N,H,W) or (N,H,W,1|3)")
    if arr.dtype == np.uint8:
        return torch.from_numpy(np.ascontiguousarray(arr)).float().div_(255.0)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise DataError(f"{path}: '{key}' holds NaN or infinite pixels")
        if arr.min() < 0 or arr.max() > 1:
            raise DataError(f"{path}: '{key}' is float outside [0, 1]; store uint8 or floats in [0, 1]")
        return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    raise DataError(f"{path}: '{key}' has dtype {arr.dtype}; expected uint8 or float in [0, 1]")


def _labels_to_tensor(arr: np.ndarray, key: str, path: Path) -> torch.Tensor:
    if not np.issubdtype(arr.dtype, np.integer):
        raise DataError(f"{path}: '{key}' has dtype {arr.dtype}; expected integer labels (class ids, or 0/1 per label)")
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise DataError(f"{path}: '{key}' has shape {arr.shape}; expected (N,) or (N, L)")
    if arr.min(initial=0) < 0:
        raise DataError(f"{path}: '{key}' holds negative labels")
    return torch.from_numpy(arr.astype(np.int64))


def _read(npz: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray:
    try:
        return npz[key]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:  # truncated member, pickled objects
        raise DataError(f"{path}: cannot read '{key}' ({e})") from None


def load_medmnist(path: str | Path, limit: int | None = None) -> ImageDataset:
    """Load a MedMNIST-format file. Labels (N,1) are classes; (N,L) with L>1 are multi-label 0/1."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"data file '{path}' does not exist")
    if not path.is_file():
        raise DataError(f"data file '{path}' is not a file")
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: cannot read as .npz ({e})") from None
    with npz:
        missing = [f"{s}_{k}" for s in SPLITS for k in ("images", "labels") if f"{s}_{k}" not in npz.files]
        if missing:
            raise DataError(f"{path}: missing key(s) {missing}; a MedMNIST-format file has train_/val_/test_ "
                            "images and labels")
        splits = {}
        for s in SPLITS:
            images = _images_to_tensor(_read(npz, f"{s}_images", path), f"{s}_images", path)
            labels = _labels_to_tensor(_read(npz, f"{s}_labels", path), f"{s}_labels", path)
            if len(images) != len(labels):
                raise DataError(f"{path}: {s}_images has {len(images)} items but {s}_labels has {len(labels)}")
            if len(images) == 0:
                raise DataError(f"{path}: split '{s}' is empty")
            splits[s] = [images, labels]
    widths = {v[1].shape[1] for v in splits.values()}
    channels = {v[0].shape[1] for v in splits.values()}
    if len(widths) != 1 or len(channels) != 1:
        raise DataError(f"{path}: splits disagree on label width {widths} or channels {channels}")
    if widths.pop() == 1:
        task = "multiclass"
        top = int(splits["train"][1].max())
        if top < 1:
            raise DataError(f"{path}: 'train_labels' hold a single class ({top}); classification needs at least two")
        for s in ("val", "test"):
            if int(splits[s][1].max()) > top:
                raise DataError(f"{path}: '{s}_labels' hold class {int(splits[s][1].max())}, out of the range "
                                f"0..{top} of 'train_labels'")
        num_classes = top + 1
        for v in splits.values():
            v[1] = v[1][:, 0]
    else:
        task = "multilabel"
        num_classes = splits["train"][1].shape[1]
        for s, v in splits.items():
            if int(v[1].max()) > 1:
                raise DataError(f"{path}: '{s}_labels' are multi-label (N, {num_classes}) but hold values other "
                                "than 0 and 1")
    if limit is not None:
        splits = {k: [v[0][:limit], v[1][:limit]] for k, v in splits.items()}
    return ImageDataset(path.stem, {k: Split(*v) for k, v in splits.items()}, task, num_classes)
