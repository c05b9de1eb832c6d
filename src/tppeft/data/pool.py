"""An unlabelled image pool for backbone pre-training and ``pretext.data``: chosen splits of several sources.

Supported sources: MedMNIST-format ``.npz`` (``<split>_images``; 2D images, or 3D volumes ``(N, D, H, W)`` from
which central slices along the first axis are taken); ``.npz`` files with an ``images`` array and a per-image
``split`` array (0/1/2 = train/val/test, or the order that ``split_names`` gives), like the packed BUSI file; and
folders of image files, at any depth, labels ignored: with ``train``/``val``/``test`` folders each is its split,
without them every image in the folder is a training image. Every image is resized to the backbone's input size;
grey and RGB sources can be mixed (grey is then replicated).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tppeft.bundled import resolve
from tppeft.data.config import PoolSourceConfig
from tppeft.data.detect import SPLIT_FOLDERS, split_folders
from tppeft.data.images import IMAGE_SUFFIXES, is_image, plan, probe, read_into
from tppeft.data.medmnist import DataError, _images_to_tensor, open_npz, split_order, subset
from tppeft.data.transforms import resize_images
from tppeft.io import file_sha256, files_sha256

READ_CHUNK = 1024  # image files decoded at a time from a folder


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
        names = split_order(npz, path)
        missing = [s for s in splits if s not in names]
        if missing:
            raise DataError(f"{path}: no split {missing} in its split_names {names}")
        images, split = npz["images"], npz["split"]
        return {s: images[split == names.index(s)] for s in splits}
    raise DataError(f"{path}: expected MedMNIST keys {[f'{s}_images' for s in splits]} or 'images' + 'split' "
                    f"arrays; found {sorted(files)}")


def image_files(folder: Path) -> list[Path]:
    """Every image file under ``folder``, at any depth, sorted; hidden files and folders are skipped."""
    return sorted(p for p in folder.rglob("*") if is_image(p) and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def folder_name(folder: Path) -> str:
    """A folder source's name in records: its own, or for a split folder (``brain_mri/train``) its parent's and the
    split's (``brain_mri_train``), as packed files are named, so that the data set is recognised by name."""
    for split, names in SPLIT_FOLDERS.items():
        if folder.name.lower() in names:
            return f"{folder.resolve().parent.name}_{split}"
    return folder.name


def _folder_splits(folder: Path, splits: list[str]) -> dict[str, list[Path]]:
    """The image files of each chosen split of a folder: its split folders, or the whole folder as ``train``."""
    parts = split_folders(folder) or {"train": folder}
    missing = [s for s in splits if s not in parts]
    if missing:
        why = "has no train/val/test folders, so every image in it is a training image" if len(parts) == 1 \
            and parts["train"] == folder else f"has no {'/'.join(missing)} folder"
        raise DataError(f"{folder}: asked for splits {splits}, but the folder {why}")
    out = {s: image_files(parts[s]) for s in splits}
    for s, files in out.items():
        if not files:
            raise DataError(f"{parts[s]}: no image files ({', '.join(IMAGE_SUFFIXES)}) at any depth")
    return out


def _read_files(files: list[Path], image_size: int, folder: Path, log) -> torch.Tensor:
    """(N, C, S, S) images of ``files`` in [0, 1] at ``image_size``: decoded as the image-folder reader decodes
    them (one shared form), then resized as a run resizes its own (so exact copies stay exact); a chunk at a
    time, so that a large folder is never held at its files' resolution."""
    target = plan(probe(files, folder), image_size)
    if target.notes:
        log(f"pool: {folder.name}: converted on reading: " + "; ".join(target.notes))
    out = []
    for start in range(0, len(files), READ_CHUNK):
        chunk = files[start:start + READ_CHUNK]
        stored = np.empty((len(chunk), target.channels, target.height, target.width), np.uint8)
        read_into(chunk, target, stored, folder)
        out.append(resize_images(torch.from_numpy(stored), image_size))
    return torch.cat(out)


def _read_folder(src: PoolSourceConfig, folder: Path, image_size: int, log) -> tuple[dict[str, torch.Tensor], str]:
    """The chosen splits of an image folder, and a checksum of the files read (names and contents)."""
    splits, used = {}, []
    for split, files in _folder_splits(folder, list(src.splits)).items():
        if src.limit is not None:
            files = [files[i] for i in subset(len(files), src.limit)]
        splits[split] = _read_files(files, image_size, folder, log)
        used += files
    return splits, files_sha256(used, folder)


def _read_npz(src: PoolSourceConfig, path: Path) -> tuple[dict[str, torch.Tensor], bool]:
    """The chosen splits of a ``.npz`` file, and whether they were volumes (then central slices)."""
    splits, volume = {}, False
    with open_npz(path) as npz:
        for split, arr in _split_arrays(npz, path, list(src.splits)).items():
            if src.limit is not None:
                arr = arr[subset(len(arr), src.limit)]
            if arr.ndim == 4 and arr.shape[-1] not in (1, 3):  # (N, D, H, W) volumes
                volume = True
                arr = central_slices(arr, src.slices)
            if len(arr) == 0:
                raise DataError(f"{path}: split '{split}' holds no images")
            splits[split] = _images_to_tensor(arr, f"{split} images", path)
    return splits, volume


def load_pool(sources: list[PoolSourceConfig], image_size: int, root: str | None = None,
              log=print, key: str = "backbone_pretrain.sources") -> tuple[torch.Tensor, list[dict]]:
    """Images (N, C, S, S) in [0, 1] from the chosen splits of every source, and a record of what was read;
    ``key`` is the config key the sources come from, for messages."""
    chunks: list[torch.Tensor] = []
    record: list[dict] = []
    for src in sources:
        path = source_path(src.path, root)
        if path.is_dir():
            (splits, sha), volume, name = _read_folder(src, path, image_size, log), False, folder_name(path)
        elif path.is_file():
            (splits, volume), sha, name = _read_npz(src, path), file_sha256(path), path.name
        else:
            raise DataError(f"{key}: '{path}' does not exist (a data file, or a folder of images)")
        counts = {split: len(images) for split, images in splits.items()}
        chunks += [resize_images(images, image_size) for images in splits.values()]
        record.append({"path": src.path, "file": name, "sha256": sha, "splits": counts,
                       "slices_per_volume": src.slices if volume else None, "images": sum(counts.values()),
                       **({"limit": src.limit} if src.limit is not None else {})})
        log(f"pool: {name}{' (image folder)' if path.is_dir() else ''} {counts}"
            + (f" ({src.slices} central slices per volume)" if volume else "")
            + (f" (limit {src.limit} per split, evenly spaced)" if src.limit is not None else ""))
    channels = max(c.shape[1] for c in chunks)
    pool = torch.cat([c.expand(-1, channels, -1, -1) if c.shape[1] != channels else c for c in chunks])
    return pool, record
