"""Reader for MedMNIST-format ``.npz`` files (``train_images``, ``train_labels``, ``val_images``, ...)."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

from tppeft.data.transforms import input_pixels
from tppeft.errors import DataError
from tppeft.io import tensors_sha256

SPLITS = ("train", "val", "test")


@dataclass
class Split:
    """One split: images as stored and the labels of the task.

    Images are (N, C, H, W) with C in {1, 3}, or (N, S, C, H, W) for volumes of S slices, at the resolution
    of the file and in its pixel type: uint8 stays uint8 (a quarter of float32's memory on the device), float
    pixels are float32 in [0, 1]. :meth:`pixels` gives a batch as the model's input needs it. Labels are (N,)
    class ids (multi-class), (N, L) 0/1 (multi-label) or (N, H, W) class-id masks at the stored resolution
    (segmentation). ``input_labels``, when set, are the labels at the model's input resolution (masks
    resized nearest-neighbour) used for training. ``size`` is the model's input size (set by the task).
    """

    images: torch.Tensor
    labels: torch.Tensor
    input_labels: torch.Tensor | None = None
    size: int | None = None

    def __len__(self) -> int:
        return self.images.shape[0]

    def pixels(self, idx: torch.Tensor | None = None) -> torch.Tensor:
        """Images ``idx`` (all without) as float in [0, 1] at the input size, resized on their device."""
        return input_pixels(self.images if idx is None else self.images[idx], self.size)

    def to(self, device: torch.device | str) -> Split:
        moved = None if self.input_labels is None else self.input_labels.to(device)
        return Split(self.images.to(device), self.labels.to(device), moved, self.size)

    def sha256(self) -> str:
        """SHA-256 of what the split holds: its images, labels and any other tensor field (a volume's extent, a
        slice view's rows, ...), not the labels resized for the model; equal digests = the same items."""
        return tensors_sha256({f.name: v for f in fields(self) if f.name != "input_labels"
                               and isinstance(v := getattr(self, f.name), torch.Tensor)})


# What a dataset holds, and so which task stage it can feed.
KINDS = ("classification", "segmentation", "volume")


@dataclass
class ImageDataset:
    """The three splits of one dataset and what its labels mean."""

    name: str
    splits: dict[str, Split]
    task: str  # "multiclass" (binary, ordinal and segmentation masks included) or "multilabel"
    num_classes: int  # classes (multiclass; background included for masks) or labels (multilabel)
    kind: str = "classification"  # one of KINDS
    class_names: list[str] | None = None  # what each class id (or label column) means, where the data says
    layout: str = ""  # how the data was read (see tppeft.data.detect)

    def __getitem__(self, split: str) -> Split:
        return self.splits[split]

    def to(self, device: torch.device | str) -> ImageDataset:
        return ImageDataset(self.name, {k: v.to(device) for k, v in self.splits.items()}, self.task,
                            self.num_classes, self.kind, self.class_names, self.layout)


def _images_to_tensor(arr: np.ndarray, key: str, path: Path) -> torch.Tensor:
    if arr.ndim == 3:
        arr = arr[:, None]
    elif arr.ndim == 4 and arr.shape[-1] in (1, 3):
        arr = arr.transpose(0, 3, 1, 2)
    else:
        raise DataError(f"{path}: '{key}' has shape {arr.shape}; expected (N,H,W) or (N,H,W,1|3)")
    return pixels_to_tensor(arr, key, path)


def pixels_to_tensor(arr: np.ndarray, key: str, path: Path) -> torch.Tensor:
    """Pixels of any shape as a tensor: uint8 as they are, float (checked to lie in [0, 1]) as float32."""
    if arr.dtype == np.uint8:
        return torch.from_numpy(np.ascontiguousarray(arr))
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


def subset(n: int, limit: int | None) -> np.ndarray:
    """Indices of ``limit`` items evenly spaced through ``n`` (all of them without a limit): a quick check
    then still sees every part of a split that is ordered by class."""
    if limit is None or limit >= n:
        return np.arange(n)
    return np.linspace(0, n - 1, limit).round().astype(np.int64)


def where(path: Path) -> str:
    """For a relative path that is missing: the folder it was looked for in."""
    return "" if path.is_absolute() else f" (relative paths are read from the folder you run in, {Path.cwd()})"


def open_npz(path: str | Path) -> np.lib.npyio.NpzFile:
    """Open an ``.npz`` without pickle; a missing or unreadable file is a :class:`DataError`."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"data file '{path}' does not exist{where(path)}; set data.path (--set data.path=PATH)")
    if not path.is_file():
        raise DataError(f"data file '{path}' is not a file")
    try:
        with open(path, "rb") as f:
            magic = f.read(2)
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror})") from None
    if magic != b"PK":  # else numpy reads any other bytes as a pickle and says only that
        raise DataError(f"{path}: not an .npz archive (numpy.savez writes a zip of .npy arrays; this file is not a "
                        "zip)")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: cannot read as .npz ({e})") from None


MEDMNIST_KEYS = tuple(f"{s}_{k}" for s in SPLITS for k in ("images", "labels"))


def check_medmnist_keys(npz: np.lib.npyio.NpzFile, path: Path) -> None:
    missing = [k for k in MEDMNIST_KEYS if k not in npz.files]
    if missing:
        raise DataError(f"{path}: missing key(s) {missing}; a MedMNIST-format file has train_/val_/test_ "
                        "images and labels")


def load_medmnist(path: str | Path, limit: int | None = None,
                  image_fn=_images_to_tensor) -> ImageDataset:
    """Load a MedMNIST-format file. Labels (N,1) are classes; (N,L) with L>1 are multi-label 0/1; an optional
    ``class_names`` says what each class id (or label column) means.

    ``image_fn(array, key, path)`` turns one split's image array into a tensor (volume readers pass their own).
    """
    path = Path(path)
    with open_npz(path) as npz:
        check_medmnist_keys(npz, path)
        splits = {}
        for s in SPLITS:
            images = image_fn(_read(npz, f"{s}_images", path), f"{s}_images", path)
            labels = _labels_to_tensor(_read(npz, f"{s}_labels", path), f"{s}_labels", path)
            if len(images) != len(labels):
                raise DataError(f"{path}: {s}_images has {len(images)} items but {s}_labels has {len(labels)}")
            if len(images) == 0:
                raise DataError(f"{path}: split '{s}' is empty")
            splits[s] = [images, labels]
        classes = _class_names(npz, path)
    return _named(_classification_dataset(path, splits, limit), classes, path)


def split_order(npz: np.lib.npyio.NpzFile, path: Path) -> list[str]:
    """The split each id of a file's ``split`` array names: its ``split_names``, else 0/1/2 = train/val/test."""
    return [str(n) for n in _read(npz, "split_names", path)] if "split_names" in npz.files else list(SPLITS)


LABELLED_KEYS = ("images", "labels", "split")


def load_labelled_npz(path: str | Path, limit: int | None = None) -> ImageDataset:
    """A classification file of one ``images`` array (N,H,W) or (N,H,W,3), ``labels`` (N,) class ids or (N,L)
    0/1, and ``split`` (N,) ids of ``split_names`` (train/val/test when absent); ``class_names`` if it has them.
    A segmentation file with labels (e.g. the packed BUSI, whose ``labels`` are its images' classes) reads so
    with ``task.type: classification``."""
    path = Path(path)
    with open_npz(path) as npz:
        missing = [k for k in LABELLED_KEYS if k not in npz.files]
        if missing:
            raise DataError(f"{path}: missing key(s) {missing}; a labelled file has 'images', 'labels' and 'split'")
        images = _images_to_tensor(_read(npz, "images", path), "images", path)
        labels = _labels_to_tensor(_read(npz, "labels", path), "labels", path)
        split, names = _read(npz, "split", path), split_order(npz, path)
        classes = _class_names(npz, path)
    if len(labels) != len(images) or split.shape != (len(images),):
        raise DataError(f"{path}: 'images', 'labels' and 'split' must have one entry per image ({len(images)}); "
                        f"found {len(labels)} labels and split of shape {split.shape}")
    absent = [s for s in SPLITS if s not in names]
    if absent:
        raise DataError(f"{path}: its split_names {names} lack {absent}")
    splits = {}
    for s in SPLITS:
        idx = torch.from_numpy(np.flatnonzero(split == names.index(s)))
        if len(idx) == 0:
            raise DataError(f"{path}: split '{s}' is empty")
        splits[s] = [images[idx], labels[idx]]
    return _named(_classification_dataset(path, splits, limit), classes, path)


def _class_names(npz: np.lib.npyio.NpzFile, path: Path) -> list[str] | None:
    """A file's optional ``class_names``: what each class id (or label column) means."""
    return [str(c) for c in _read(npz, "class_names", path)] if "class_names" in npz.files else None


def _named(data: ImageDataset, classes: list[str] | None, path: Path) -> ImageDataset:
    if classes is not None and data.task == "multiclass" and len(classes) < data.num_classes:
        raise DataError(f"{path}: 'class_names' names {len(classes)} classes, its labels hold {data.num_classes}")
    data.class_names = classes
    return data


def _classification_dataset(path: Path, splits: dict[str, list[torch.Tensor]], limit: int | None) -> ImageDataset:
    """Labels (N,1) are classes; (N,L) with L>1 are multi-label 0/1; ``limit`` images of each split are kept."""
    widths = {v[1].shape[1] for v in splits.values()}
    channels = {v[0].shape[1:-2] for v in splits.values()}
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
    if limit is not None:  # after the checks, which see every label
        for v in splits.values():
            keep = torch.from_numpy(subset(len(v[0]), limit))
            v[0], v[1] = v[0][keep], v[1][keep]
    return ImageDataset(path.stem, {k: Split(*v) for k, v in splits.items()}, task, num_classes)
