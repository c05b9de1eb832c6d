"""One entry point for every data layout: detect what a path holds, say it, and read it with its reader."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tppeft.data import nifti
from tppeft.data.classes import merge_classes, merged_text
from tppeft.data.detect import detect_layout
from tppeft.data.medmnist import DataError, ImageDataset, load_labelled_npz, load_medmnist
from tppeft.data.segmentation import load_segmentation_folder, load_segmentation_npz
from tppeft.data.volumes import load_volumes

if TYPE_CHECKING:
    from tppeft.data.config import DataConfig, SplitConfig


def detect_kind(path: str | Path) -> str:
    """What ``path`` holds: ``segmentation`` (image/mask folders, or an npz with images/masks/split), ``volume``
    (a MedMNIST-format npz of (N,D,H,W) volumes) or ``classification`` (MedMNIST-format 2D images, an image
    folder or a CSV manifest) or ``segmentation3d`` (NIfTI volumes: an MSD folder or a CSV of image/label
    paths)."""
    if nifti.holds_volumes(Path(path)):
        return nifti.KIND
    return detect_layout(path).kind


def _quiet(_: str) -> None:
    pass


def load_dataset(path: str | Path, kind: str = "auto", limit: int | None = None, slices: int | None = None,
                 slice_span: float = 1.0, *, size: int | None = None, split: SplitConfig | None = None,
                 cache: bool | str = "auto", cache_dir: str | None = None,
                 log: Callable[[str], None] = _quiet, volume: nifti.VolumeDataConfig | None = None) -> ImageDataset:
    """Read ``path`` as ``kind`` (``auto`` = detected); a kind the data does not hold is a :class:`DataError`.

    ``size`` (the model's input side) is where images of several sizes are resized to on reading; ``split``,
    ``cache`` and ``cache_dir`` are ``data.split``, ``data.cache`` and ``data.cache_dir`` (image folders and
    CSV manifests). ``log`` hears the layout found and any conversion, once. ``volume`` holds the options of
    NIfTI volumes (``data.volume``).
    """
    if nifti.holds_volumes(Path(path)):
        if kind not in ("auto", nifti.KIND):
            raise DataError(f"{path}: holds {nifti.KIND} data but task.type is '{kind}'; set task.type: auto or "
                            f"{nifti.KIND}")
        log(f"data: NIfTI volumes in {path}")
        return nifti.load_nifti_dataset(path, volume, limit)
    layout = detect_layout(path, kind)
    if kind != "auto" and kind != layout.kind:
        raise DataError(f"{path}: holds {layout.kind} data but task.type is '{kind}' (found: {layout.text}); set "
                        f"task.type: auto or {layout.kind}")
    log(f"data: {layout.describe()}")
    if layout.name in ("image_folder", "manifest"):
        from tppeft.data.folder import read_image_folder
        from tppeft.data.listing import load_listing
        from tppeft.data.manifest import read_manifest

        listing = (read_image_folder(layout.path) if layout.name == "image_folder"
                   else read_manifest(layout.path, split.group_by if split else None))
        data = load_listing(listing, limit=limit, size=size, split_cfg=split, cache=cache, cache_dir=cache_dir,
                            log=log)
    elif layout.name == "segmentation_folder":
        data = load_segmentation_folder(path, limit)
    elif layout.name == "segmentation_npz":
        data = load_segmentation_npz(path, limit)
    elif layout.name == "labelled_npz":
        data = load_labelled_npz(path, limit)
    elif layout.name == "volumes":
        data = load_volumes(path, limit, slices, slice_span)
    else:
        data = load_medmnist(path, limit)
    data.layout = layout.text
    if data.class_names:
        log(f"data: {len(data.class_names)} {'labels' if data.task == 'multilabel' else 'classes'}: "
            + ", ".join(data.class_names))
    return data


def data_from_config(cfg: DataConfig, task_type: str = "auto", slices: int | None = None, slice_span: float = 1.0,
                     size: int | None = None, log: Callable[[str], None] = _quiet) -> ImageDataset:
    """The dataset the ``data`` section names (``bundled:`` paths resolved), read for a model of input ``size``."""
    from tppeft.bundled import resolve

    data = load_dataset(resolve(cfg.path), task_type, cfg.limit, slices, slice_span, size=size, split=cfg.split,
                        cache=cfg.cache, cache_dir=cfg.cache_dir, log=log, volume=cfg.volume)
    if cfg.merge_classes:
        data = merge_classes(data, cfg.merge_classes)
        log(f"data: classes merged (data.merge_classes): {merged_text(data, cfg.merge_classes)}")
    return data
