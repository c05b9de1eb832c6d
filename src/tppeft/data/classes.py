"""``data.merge_classes``: some classes of a single-label classification set merged into one (tumour types into
"tumour", say), so that one data file serves a coarser task without being written again."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from tppeft.options import ConfigError

if TYPE_CHECKING:  # torch-free to import: the report words a merge too
    from tppeft.data.medmnist import ImageDataset


def merge_classes(data: ImageDataset, groups: dict[str, list[str | int]]) -> ImageDataset:
    """``data`` with each group's classes (by name, or by id where the data names none) made one class named for
    the group; the other classes keep theirs. Classes are numbered in the order of their first member, and every
    split is relabelled; images are untouched."""
    if data.kind != "classification" or data.task != "multiclass":
        raise ConfigError(f"data.merge_classes: merges the classes of single-label classification data; "
                          f"{data.name} is {data.task} {data.kind}")
    names = data.class_names or [str(i) for i in range(data.num_classes)]
    group_of = {}
    for group, members in groups.items():
        for member in map(str, members):
            if member not in names:
                raise ConfigError(f"data.merge_classes: {group}: '{member}' is not a class of {data.name} (its "
                                  f"classes: {', '.join(names)})")
            group_of[member] = group
    merged = list(dict.fromkeys(group_of.get(n, n) for n in names))  # first member's place
    if len(merged) < 2:
        raise ConfigError(f"data.merge_classes: leaves {data.name} one class ({merged[0]}); a classifier needs two")
    ids = [merged.index(group_of.get(n, n)) for n in names]
    splits = {k: dataclasses.replace(s, labels=s.labels.new_tensor(ids)[s.labels]) for k, s in data.splits.items()}
    return dataclasses.replace(data, splits=splits, num_classes=len(merged), class_names=merged)


def groups_text(groups: dict[str, list[str | int]]) -> str:
    """The groups in words: "tumour = glioma + meningioma + pituitary"."""
    return "; ".join(f"{g} = {' + '.join(map(str, m))}" for g, m in groups.items())


def merged_text(data: ImageDataset, groups: dict[str, list[str | int]]) -> str:
    """The merge in words: "tumour = glioma + meningioma + pituitary; 2 classes: tumour, notumor"."""
    return f"{groups_text(groups)}; {data.num_classes} classes: {', '.join(data.class_names or [])}"
