"""One entry point for every data format: detect what a path holds and read it with its reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tppeft.data import nifti
from tppeft.data.medmnist import (
    MEDMNIST_KEYS,
    DataError,
    ImageDataset,
    check_medmnist_keys,
    load_medmnist,
    open_npz,
)
from tppeft.data.segmentation import SEGMENTATION_KEYS, load_segmentation_folder, load_segmentation_npz
from tppeft.data.volumes import load_volumes


def _npy_shape(npz: np.lib.npyio.NpzFile, key: str) -> tuple[int, ...]:
    """Shape of one array of an ``.npz`` from its header, without reading the data."""
    with npz.zip.open(f"{key}.npy") as f:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        return read(f)[0]


def detect_kind(path: str | Path) -> str:
    """What ``path`` holds: ``segmentation`` (a folder, or an npz with images/masks/split), ``volume``
    (a MedMNIST-format npz of (N,D,H,W) volumes), ``segmentation3d`` (NIfTI volumes: an MSD folder or a CSV of
    image/label paths) or ``classification`` (MedMNIST-format 2D images)."""
    path = Path(path)
    if nifti.holds_volumes(path):
        return nifti.KIND
    if path.is_dir():
        return "segmentation"
    with open_npz(path) as npz:
        if all(k in npz.files for k in SEGMENTATION_KEYS):
            return "segmentation"
        if all(k in npz.files for k in MEDMNIST_KEYS):
            shape = _npy_shape(npz, "train_images")
            return "volume" if len(shape) == 4 and shape[-1] not in (1, 3) else "classification"
        if any(k in npz.files for k in MEDMNIST_KEYS):  # a MedMNIST-format file with keys missing: name them
            check_medmnist_keys(npz, path)
    raise DataError(f"{path}: not a known data layout; expected MedMNIST keys {list(MEDMNIST_KEYS)} "
                    f"or segmentation keys {list(SEGMENTATION_KEYS)}")


def load_dataset(path: str | Path, kind: str = "auto", limit: int | None = None, slices: int | None = None,
                 slice_span: float = 1.0, volume: nifti.VolumeDataConfig | None = None) -> ImageDataset:
    """Read ``path`` as ``kind`` (``auto`` = detected); a kind the file does not hold is a :class:`DataError`.
    ``volume`` holds the options of NIfTI volumes."""
    found = detect_kind(path)
    if kind != "auto" and kind != found:
        raise DataError(f"{path}: holds {found} data but task.type is '{kind}'; set task.type: auto or {found}")
    if found == nifti.KIND:
        return nifti.load_nifti_dataset(path, volume, limit)
    if found == "segmentation":
        return (load_segmentation_folder if Path(path).is_dir() else load_segmentation_npz)(path, limit)
    if found == "volume":
        return load_volumes(path, limit, slices, slice_span)
    return load_medmnist(path, limit)
