"""Where the volumes of a NIfTI dataset are: an MSD folder (``imagesTr/``, ``labelsTr/``, ``dataset.json``) or a
CSV of image/label paths; and which split each case belongs to (a split file, the CSV's column, or seeded)."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tppeft.data.medmnist import SPLITS, DataError, where
from tppeft.data.nifti.config import VolumeDataConfig

NIFTI_SUFFIXES = (".nii.gz", ".nii")
SPLIT_FILE = "split.csv"  # the split file that an MSD folder may carry beside dataset.json


@dataclass
class VolumeCase:
    """One labelled volume: its name, image and label files, and the split its source gives (if any)."""

    name: str
    image: Path
    label: Path
    split: str | None = None


@dataclass
class VolumeSource:
    """The cases of a dataset (``path``: the MSD folder or the CSV), its label names (class id -> name, from
    ``dataset.json``) and its own split file."""

    path: Path
    name: str
    cases: list[VolumeCase]
    label_names: dict[int, str] | None = None
    split_file: Path | None = None
    notes: list[str] = field(default_factory=list)


def is_nifti(path: str | Path) -> bool:
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def case_name(path: Path) -> str:
    """File name without its NIfTI suffix (``hippocampus_001.nii.gz`` -> ``hippocampus_001``)."""
    name = path.name
    for suffix in NIFTI_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def is_msd_folder(path: Path) -> bool:
    return path.is_dir() and ((path / "dataset.json").is_file() or (path / "imagesTr").is_dir())


def is_volume_csv(path: Path) -> bool:
    """A CSV whose header has ``image`` and ``label`` columns and whose first image is a NIfTI file."""
    if not (path.is_file() and path.suffix.lower() == ".csv"):
        return False
    with open(path, newline="") as f:
        first = next(csv.DictReader(f), None)
    return first is not None and "label" in first and is_nifti(first.get("image") or "")


def holds_volumes(path: Path) -> bool:
    """Whether ``path`` is NIfTI data (an MSD folder or a CSV of image/label paths); a lone NIfTI file is an error."""
    if is_nifti(path) and path.is_file():
        raise DataError(f"{path}: a single NIfTI file; data.path takes an MSD folder (imagesTr/, labelsTr/, "
                        "dataset.json) or a CSV with 'image' and 'label' columns")
    return is_msd_folder(path) or is_volume_csv(path)


def _visible_nifti(folder: Path) -> list[Path]:
    """NIfTI files of ``folder``, sorted, without hidden files (MSD archives carry macOS ``._*`` copies)."""
    return sorted(p for p in folder.iterdir() if is_nifti(p) and not p.name.startswith("."))


def _label_names(raw: dict, path: Path) -> dict[int, str]:
    """MSD's ``{"0": "background", ...}`` or nnU-Net v2's ``{"background": 0, ...}``, as class id -> name."""
    try:
        if all(str(k).isdigit() for k in raw):
            return {int(k): str(v) for k, v in raw.items()}
        return {int(v): str(k) for k, v in raw.items()}
    except (TypeError, ValueError):
        raise DataError(f"{path}: 'labels' must map class ids to names, e.g. {{\"0\": \"background\"}}") from None


def msd_source(root: Path) -> VolumeSource:
    """The training cases of an MSD folder: ``dataset.json``'s ``training`` list (read by MONAI's
    ``load_decathlon_datalist``), or, without it, ``imagesTr/NAME[_0000].nii.gz`` paired with
    ``labelsTr/NAME.nii.gz``. Every image in ``imagesTr`` must have its label file."""
    meta_file = root / "dataset.json"
    names = None
    pairs: list[tuple[Path, Path]] = []
    if meta_file.is_file():
        from monai.data import load_decathlon_datalist

        try:
            meta = json.loads(meta_file.read_text())
            entries = load_decathlon_datalist(meta_file, True, "training", base_dir=root)
        except (ValueError, KeyError, TypeError) as e:
            raise DataError(f"{meta_file}: not an MSD dataset.json with a 'training' list ({e})") from None
        if "labels" in meta:
            names = _label_names(meta["labels"], meta_file)
        pairs = [(Path(e["image"]), Path(e["label"])) for e in entries]
    images_dir, labels_dir = root / "imagesTr", root / "labelsTr"
    if images_dir.is_dir():  # an image in imagesTr without its label is an error even when dataset.json omits it
        for image in _visible_nifti(images_dir):
            base = case_name(image).removesuffix("_0000")
            label = next((labels_dir / f"{base}{s}" for s in NIFTI_SUFFIXES if (labels_dir / f"{base}{s}").is_file()),
                         labels_dir / f"{base}.nii.gz")
            if not meta_file.is_file():
                pairs.append((image, label))
            if not label.is_file():
                raise DataError(f"{image}: no label file for it (expected {label})")
    if not pairs:
        raise DataError(f"{root}: no training volumes (expected imagesTr/*.nii.gz with labelsTr/*.nii.gz, or "
                        "dataset.json's 'training' list)")
    cases = []
    for image, label in pairs:
        for file in (image, label):
            if not file.is_file():
                raise DataError(f"{file}: listed in {meta_file.name} but does not exist")
        cases.append(VolumeCase(case_name(image).removesuffix("_0000"), image, label))
    split_file = root / SPLIT_FILE
    return VolumeSource(root, root.name, cases, names, split_file if split_file.is_file() else None)


def csv_source(path: Path) -> VolumeSource:
    """Cases of a CSV with columns ``image`` and ``label`` (paths, relative ones from the CSV's folder), and
    optionally ``case`` (a name; default the image's file name) and ``split`` (train/val/test)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"image", "label"} <= set(rows[0]):
        raise DataError(f"{path}: expected a header with columns 'image' and 'label' (and optionally 'case', 'split')")
    cases = []
    for i, row in enumerate(rows, start=2):
        image_text, label_text = (row.get("image") or "").strip(), (row.get("label") or "").strip()
        if not image_text:
            raise DataError(f"{path}: line {i} has no image path")
        image = path.parent / image_text
        if not label_text:
            raise DataError(f"{image}: no label file for it ({path}, line {i})")
        label = path.parent / label_text
        for file in (image, label):
            if not file.is_file():
                raise DataError(f"{file}: does not exist ({path}, line {i})")
        split = (row.get("split") or "").strip() or None
        cases.append(VolumeCase((row.get("case") or "").strip() or case_name(image), image, label, split))
    return VolumeSource(path, path.stem, cases)


def find_source(path: Path) -> VolumeSource:
    """The cases that ``path`` (an MSD folder or a CSV) holds; names must be unique."""
    if not path.exists():
        raise DataError(f"data path '{path}' does not exist{where(path)}; set data.path (--set data.path=PATH)")
    source = msd_source(path) if path.is_dir() else csv_source(path)
    seen: set[str] = set()
    for case in source.cases:
        if case.name in seen:
            raise DataError(f"{case.image}: case name '{case.name}' appears twice in {path}")
        seen.add(case.name)
    return source


def _read_split_file(path: Path) -> dict[str, str]:
    if not path.is_file():
        raise DataError(f"split file '{path}' does not exist{where(path)}; set data.volume.split")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"case", "split"} <= set(rows[0]):
        raise DataError(f"{path}: expected a header 'case,split'")
    return {r["case"].strip(): (r["split"] or "").strip() for r in rows}


def seeded_split(names: list[str], seed: int, fractions: tuple[float, float, float]) -> dict[str, str]:
    """Sorted names, permuted by ``numpy.random.default_rng(seed)``; the first ``round(f_train * n)`` train,
    the next ``round(f_val * n)`` val, the rest test."""
    ordered = sorted(names)
    perm = np.random.default_rng(seed).permutation(len(ordered))
    n_train = round(fractions[0] * len(ordered))
    n_val = round(fractions[1] * len(ordered))
    labels = ["train"] * n_train + ["val"] * n_val + ["test"] * (len(ordered) - n_train - n_val)
    return {ordered[i]: s for i, s in zip(perm, labels, strict=True)}


def assign_splits(source: VolumeSource, cfg: VolumeDataConfig) -> tuple[dict[str, list[VolumeCase]], str]:
    """Cases by split (each sorted by name) and a few words on where the split came from."""
    names = [c.name for c in source.cases]
    if cfg.split == "seeded" or (cfg.split == "auto" and source.split_file is None
                                 and not any(c.split for c in source.cases)):
        split = seeded_split(names, cfg.split_seed, cfg.split_fractions)
        origin, where_from = f"seeded split (seed {cfg.split_seed})", None
    elif cfg.split == "auto" and any(c.split for c in source.cases):
        split = {c.name: c.split or "" for c in source.cases}
        origin, where_from = f"split column of {source.path}", source.path
    else:
        file = source.split_file if cfg.split == "auto" else Path(cfg.split).expanduser()
        split = _read_split_file(file)
        origin, where_from = f"split file {file}", file
    out: dict[str, list[VolumeCase]] = {s: [] for s in SPLITS}
    for case in sorted(source.cases, key=lambda c: c.name):
        s = split.get(case.name)
        if s not in out:
            got = "no split" if s is None else f"split '{s}'"
            raise DataError(f"{where_from or case.image}: case '{case.name}' has {got}; expected one of {list(SPLITS)}")
        out[s].append(case)
    for s, cases in out.items():
        if not cases:
            raise DataError(f"{source.path}: split '{s}' is empty ({origin})")
    return out, origin
