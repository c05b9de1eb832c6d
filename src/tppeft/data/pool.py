"""An unlabelled image pool for backbone pre-training: chosen splits of several files, nothing else.

Supported files: MedMNIST-format ``.npz`` (``<split>_images``; 2D images, or 3D volumes ``(N, D, H, W)`` from
which central slices along the first axis are taken) and ``.npz`` files with an ``images`` array and a per-image
``split`` array (0/1/2 = train/val/test, or the order that ``split_names`` gives), like the packed BUSI file.
Every image is resized to the backbone's input size; grey and RGB files can be mixed (grey is then replicated).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tppeft.bundled import resolve
from tppeft.data.config import PoolSourceConfig
from tppeft.data.medmnist import DataError, _images_to_tensor, open_npz, subset
from tppeft.data.transforms import resize_images
from tppeft.io import file_sha256

DEFAULT_SPLIT_NAMES = ("train", "val", "test")


def source_path(spec: str, root: str | None) -> Path:
    path = resolve(spec)
    if root is not None and not spec.startswith("bundled:") and not path.is_absolute():
        path = Path(root).expanduser() / path
    return path


def central_slices(volumes: np.ndarray, k: int) -> np.ndarray:
    """(N, D, H, W) -> (N * k, H, W): the ``k`` slices around the middle of the first axis, per volume."""
    depth = volumes.shape[1]
    if k > depth:
        raise DataError(f"asked for {k} central slices of volumes of depth {depth}")
    first = depth // 2 - k // 2
    return volumes[:, first:first + k].reshape(-1, *volumes.shape[2:])


def _split_arrays(npz, path: Path, splits: list[str]) -> dict[str, np.ndarray]:
    files = set(npz.files)
    if all(f"{s}_images" in files for s in splits):
        return {s: npz[f"{s}_images"] for s in splits}
    if {"images", "split"} <= files:
        names = [str(n) for n in npz["split_names"]] if "split_names" in files else list(DEFAULT_SPLIT_NAMES)
        missing = [s for s in splits if s not in names]
        if missing:
            raise DataError(f"{path}: no split {missing} in its split_names {names}")
        images, split = npz["images"], npz["split"]
        return {s: images[split == names.index(s)] for s in splits}
    raise DataError(f"{path}: expected MedMNIST keys {[f'{s}_images' for s in splits]} or 'images' + 'split' "
                    f"arrays; found {sorted(files)}")


def load_pool(sources: list[PoolSourceConfig], image_size: int, root: str | None = None,
              log=print, key: str = "backbone_pretrain.sources") -> tuple[torch.Tensor, list[dict]]:
    """Images (N, C, S, S) in [0, 1] from the chosen splits of every source, and a record of what was read;
    ``key`` is the config key the sources come from, for messages."""
    chunks: list[torch.Tensor] = []
    record: list[dict] = []
    for src in sources:
        path = source_path(src.path, root)
        if not path.is_file():
            raise DataError(f"{key}: data file '{path}' does not exist")
        npz = open_npz(path)
        counts: dict[str, int] = {}
        volume = False
        with npz:
            for split, arr in _split_arrays(npz, path, list(src.splits)).items():
                if src.limit is not None:
                    arr = arr[subset(len(arr), src.limit)]
                if arr.ndim == 4 and arr.shape[-1] not in (1, 3):  # (N, D, H, W) volumes
                    volume = True
                    arr = central_slices(arr, src.slices)
                if len(arr) == 0:
                    raise DataError(f"{path}: split '{split}' holds no images")
                images = resize_images(_images_to_tensor(arr, f"{split} images", path), image_size)
                chunks.append(images)
                counts[split] = len(images)
        record.append({"path": src.path, "file": path.name, "sha256": file_sha256(path), "splits": counts,
                       "slices_per_volume": src.slices if volume else None, "images": sum(counts.values()),
                       **({"limit": src.limit} if src.limit is not None else {})})
        log(f"pool: {path.name} {counts}" + (f" ({src.slices} central slices per volume)" if volume else "")
            + (f" (limit {src.limit} per split, evenly spaced)" if src.limit is not None else ""))
    channels = max(c.shape[1] for c in chunks)
    pool = torch.cat([c.expand(-1, channels, -1, -1) if c.shape[1] != channels else c for c in chunks])
    return pool, record
