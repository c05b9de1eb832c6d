"""Reader for MedMNIST-3D ``.npz`` files: volumes ``(N, D, H, W)`` cut into slices for a 2D backbone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tppeft.data.medmnist import DataError, ImageDataset, load_medmnist, pixels_to_tensor


def slice_indices(depth: int, count: int | None, span: float = 1.0) -> list[int]:
    """``count`` slice indices evenly spaced over the central ``span`` fraction of ``depth`` (all: None)."""
    lo = (depth - 1) * (1 - span) / 2
    hi = (depth - 1) - lo
    if count is None:
        return list(range(int(np.ceil(lo - 1e-9)), int(np.floor(hi + 1e-9)) + 1))
    if count == 1:
        return [int(round((lo + hi) / 2))]
    return [int(round(lo + (hi - lo) * i / (count - 1))) for i in range(count)]


def load_volumes(path: str | Path, limit: int | None = None, slices: int | None = None,
                 span: float = 1.0) -> ImageDataset:
    """Load a MedMNIST-3D file; images become (N, S, 1, H, W): S slices along the first spatial axis."""
    chosen: dict[str, list[int]] = {}

    def to_slices(arr: np.ndarray, key: str, p: Path) -> torch.Tensor:
        if arr.ndim != 4:
            raise DataError(f"{p}: '{key}' has shape {arr.shape}; expected volumes (N,D,H,W)")
        idx = slice_indices(arr.shape[1], slices, span)
        if not idx or (slices is not None and slices > arr.shape[1]):
            raise DataError(f"{p}: volumes have depth {arr.shape[1]}, too few for task.slices={slices} "
                            f"within task.slice_span={span}")
        chosen[key] = idx
        return pixels_to_tensor(np.ascontiguousarray(arr[:, idx, None]), key, p)  # slices first: less to convert

    ds = load_medmnist(path, limit, image_fn=to_slices)
    ds.kind = "volume"
    return ds
