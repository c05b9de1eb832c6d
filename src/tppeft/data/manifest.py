"""Reader of CSV manifests: ``path,label[,split][,group]``, paths relative to the CSV's folder.

One label column holds class names (multi-label when a value lists several, ``;``-separated); several label
columns are multi-label, one 0/1 column per label. Without a ``split`` column every split is drawn by
``data.split``. The group column (``data.split.group_by``, else ``group`` when present) keeps a group's images
in one split.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from tppeft.data.detect import SPLIT_FOLDERS
from tppeft.data.images import named
from tppeft.data.listing import POOL, Listing
from tppeft.data.medmnist import SPLITS, DataError, where

SPLIT_VALUES = {name: SPLITS.index(split) for split, names in SPLIT_FOLDERS.items() for name in names}
TRUE, FALSE = {"1", "1.0", "true", "yes"}, {"0", "0.0", "false", "no", ""}


def _sort_names(names: set[str]) -> list[str]:
    """Class names in order: numerically when all are integers, else alphabetically (as ``ImageFolder``)."""
    try:
        return sorted(names, key=int)
    except ValueError:
        return sorted(names)


def _rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            header = [h.strip() for h in reader.fieldnames or []]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: cannot read as a CSV manifest ({e})") from None
    if "path" not in header:
        raise DataError(f"{path}: expected a header row with a 'path' column (path,label[,split][,group]); "
                        f"got {header[:6]}")
    if not rows:
        raise DataError(f"{path}: the manifest lists no images")
    return header, [{k.strip(): (v or "").strip() for k, v in r.items() if k is not None} for r in rows]


def _single_labels(rows: list[dict[str, str]], column: str, path: Path) -> tuple[np.ndarray, list[str]]:
    values = [r[column] for r in rows]
    if any(";" in v for v in values):  # several labels in one cell: multi-label (an empty cell: no label)
        tokens = [[t.strip() for t in v.split(";") if t.strip()] for v in values]
        names = _sort_names({t for row in tokens for t in row})
        index = {n: i for i, n in enumerate(names)}
        labels = np.zeros((len(rows), len(names)), np.int64)
        for i, row in enumerate(tokens):
            labels[i, [index[t] for t in row]] = 1
        return labels, names
    blank = [str(i + 2) for i, v in enumerate(values) if not v]
    if blank:
        raise DataError(f"{path}: {len(blank)} row(s) without a label (line {named(blank)})")
    names = _sort_names(set(values))
    index = {n: i for i, n in enumerate(names)}
    return np.array([index[v] for v in values], np.int64), names


def _label_columns(rows: list[dict[str, str]], columns: list[str], path: Path) -> np.ndarray:
    labels = np.zeros((len(rows), len(columns)), np.int64)
    for j, c in enumerate(columns):
        for i, r in enumerate(rows):
            v = r[c].lower()
            if v not in TRUE | FALSE:
                raise DataError(f"{path}: column '{c}' holds '{r[c]}' (line {i + 2}); with several label columns "
                                "each is one label, 0 or 1 (drop other columns from the manifest)")
            labels[i, j] = v in TRUE
    return labels


def read_manifest(path: str | Path, group_by: str | None = None) -> Listing:
    """The files, labels, given splits and groups of the manifest ``path``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"manifest '{path}' does not exist{where(path)}; set data.path (--set data.path=PATH)")
    header, rows = _rows(path)
    if group_by is not None and group_by not in header:
        raise DataError(f"{path}: data.split.group_by='{group_by}' is not a column; columns: {header}")
    group_col = group_by or ("group" if "group" in header else None)
    label_cols = [c for c in header if c not in ("path", "split", group_col)]
    if not label_cols:
        raise DataError(f"{path}: no label column; expected path,label[,split][,group]")
    empty = [str(i + 2) for i, r in enumerate(rows) if not r["path"]]
    if empty:
        raise DataError(f"{path}: {len(empty)} row(s) with an empty path (line {named(empty)})")
    files = [path.parent / r["path"].replace("\\", "/") for r in rows]
    if len(label_cols) == 1:
        labels, names = _single_labels(rows, label_cols[0], path)
    else:
        labels, names = _label_columns(rows, label_cols, path), label_cols
    if "split" in header:
        unknown = sorted({r["split"] for r in rows if r["split"].lower() not in SPLIT_VALUES})
        if unknown:
            raise DataError(f"{path}: split value(s) {named(unknown)} are not train, val or test")
        split, missing = np.array([SPLIT_VALUES[r["split"].lower()] for r in rows], np.int64), ()
    else:
        split, missing = np.full(len(rows), POOL, np.int64), ("val", "test")
    # an image without a group value is a group of its own
    groups = None if group_col is None else np.array([r[group_col] or f"\0line {i + 2}" for i, r in enumerate(rows)],
                                                     dtype=object)
    name = path.parent.name if path.stem in ("labels", "manifest", "index") else path.stem
    return Listing(name, path, files, labels, names, split, missing, groups)
