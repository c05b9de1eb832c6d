"""What a data path holds: one of the accepted layouts, found from its names alone (no image is decoded)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tppeft.data.medmnist import LABELLED_KEYS, MEDMNIST_KEYS, DataError, check_medmnist_keys, open_npz, where
from tppeft.data.segmentation import SEGMENTATION_KEYS

# Folder names read as each split (any case): `Training/` and `Testing/` as often shipped are splits too.
SPLIT_FOLDERS = {"train": ("train", "training"), "val": ("val", "valid", "validation"), "test": ("test", "testing")}
PAIR_FOLDERS = {"images", "masks"}
ACCEPTED = ("accepted layouts: a MedMNIST-format .npz (2D or 3D); a segmentation .npz (images, masks, split); "
            "a labelled .npz (images, labels, split); "
            "DIR/{train,val,test}/{images,masks}/ (image/mask pairs); DIR/{train,val,test}/<class>/* or "
            "DIR/<class>/* (image folder); a CSV manifest path,label[,split][,group]")


@dataclass(frozen=True)
class Layout:
    """A detected layout: its name, the data kind it feeds (see ``KINDS``) and the file it reads."""

    name: str  # medmnist, volumes, segmentation_npz, labelled_npz, segmentation_folder, image_folder, manifest
    kind: str
    path: Path
    text: str  # how the layout is described to the user

    def describe(self) -> str:
        return f"{self.text} at {self.path}"


def _npy_shape(npz: np.lib.npyio.NpzFile, key: str) -> tuple[int, ...]:
    """Shape of one array of an ``.npz`` from its header, without reading the data."""
    with npz.zip.open(f"{key}.npy") as f:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        return read(f)[0]


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


def split_folders(folder: Path) -> dict[str, Path]:
    """The split folders of ``folder`` by split name; two folders naming one split are an error."""
    found: dict[str, Path] = {}
    for d in _visible_dirs(folder):
        for split, names in SPLIT_FOLDERS.items():
            if d.name.lower() in names:
                if split in found:
                    raise DataError(f"{folder}: both '{found[split].name}' and '{d.name}' name the {split} split")
                found[split] = d
    return found


def _ambiguous(folder: Path, why: str) -> DataError:
    return DataError(f"{folder}: ambiguous folder ({why}); {ACCEPTED}")


def _manifests(folder: Path) -> list[Path]:
    """CSV files of ``folder`` whose header has a ``path`` column."""
    found = []
    for f in sorted(folder.glob("*.csv")):
        try:
            with open(f, encoding="utf-8-sig") as fh:
                header = fh.readline()
        except (OSError, UnicodeDecodeError):
            continue
        if "path" in (h.strip().strip('"') for h in header.split(",")):
            found.append(f)
    return found


def _folder_layout(folder: Path) -> Layout:
    """Split folders first (image/mask pairs or class folders), then one CSV manifest, then class folders."""
    splits = split_folders(folder)
    others = [d.name for d in _visible_dirs(folder) if d not in splits.values()]
    manifests = _manifests(folder)
    if splits:
        if others:
            raise _ambiguous(folder, f"split folders {sorted(d.name for d in splits.values())} beside other "
                             f"folders {others[:3]}")
        kinds = set()
        for d in splits.values():
            names = {c.name for c in _visible_dirs(d)}
            if names and names <= PAIR_FOLDERS:
                kinds.add("pairs")
            elif names & PAIR_FOLDERS:
                raise _ambiguous(d, f"'images'/'masks' beside class folders {sorted(names - PAIR_FOLDERS)[:3]}")
            else:
                kinds.add("classes")
        if len(kinds) > 1:
            raise _ambiguous(folder, "some split folders hold images/ and masks/, others class folders")
        if kinds == {"pairs"}:
            return Layout("segmentation_folder", "segmentation", folder,
                          "segmentation folder DIR/{train,val,test}/{images,masks}/")
        given = ",".join(s for s in SPLIT_FOLDERS if s in splits)
        unread = f" (not read beside it: {', '.join(m.name for m in manifests)})" if manifests else ""
        return Layout("image_folder", "classification", folder, f"image folder DIR/{{{given}}}/<class>/*{unread}")
    if len(manifests) > 1:
        raise _ambiguous(folder, f"{len(manifests)} CSV manifests ({', '.join(m.name for m in manifests[:3])}); "
                         "set data.path to one of them")
    if manifests:
        return Layout("manifest", "classification", manifests[0], "CSV manifest")
    if others:
        if set(others) >= PAIR_FOLDERS:
            raise _ambiguous(folder, "'images' and 'masks' without split folders; image/mask pairs go in "
                             "DIR/{train,val,test}/{images,masks}/")
        return Layout("image_folder", "classification", folder, "image folder DIR/<class>/* (no split folders)")
    raise DataError(f"{folder}: no data layout found (no split, class or image/mask folders, no CSV manifest with a "
                    f"'path' column); {ACCEPTED}")


def detect_layout(path: str | Path, kind: str = "auto") -> Layout:
    """The layout of ``path``; a path of no accepted layout is a :class:`DataError` that lists them. ``kind``
    (``task.type``) decides for a file that holds both: masks and labels read as segmentation unless it is
    ``classification``."""
    path = Path(path)
    if path.is_dir():
        return _folder_layout(path)
    if path.suffix.lower() == ".csv":
        if not path.is_file():
            raise DataError(f"manifest '{path}' does not exist{where(path)}; set data.path (--set data.path=PATH)")
        return Layout("manifest", "classification", path, "CSV manifest")
    with open_npz(path) as npz:
        labelled = all(k in npz.files for k in LABELLED_KEYS)
        if all(k in npz.files for k in SEGMENTATION_KEYS) and not (labelled and kind == "classification"):
            return Layout("segmentation_npz", "segmentation", path, "segmentation .npz (images, masks, split)")
        if labelled:
            return Layout("labelled_npz", "classification", path, "labelled .npz (images, labels, split)")
        if all(k in npz.files for k in MEDMNIST_KEYS):
            shape = _npy_shape(npz, "train_images")
            if len(shape) == 4 and shape[-1] not in (1, 3):
                return Layout("volumes", "volume", path, "MedMNIST-format .npz of volumes (N,D,H,W)")
            return Layout("medmnist", "classification", path, "MedMNIST-format .npz")
        if any(k in npz.files for k in MEDMNIST_KEYS):  # a MedMNIST-format file with keys missing: name them
            check_medmnist_keys(npz, path)
    raise DataError(f"{path}: not a known data layout; expected MedMNIST keys {list(MEDMNIST_KEYS)}, "
                    f"segmentation keys {list(SEGMENTATION_KEYS)} or labelled keys {list(LABELLED_KEYS)}; {ACCEPTED}")
