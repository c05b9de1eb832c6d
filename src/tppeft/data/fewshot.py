"""Few labels: the labelled subset of the training split that fine-tuning sees (``data.label_fraction``,
``data.labels_per_class``). The TPP stage still sees every training image, without labels.

The subset is drawn per seed from its own random stream, identically in every arm of that seed, and
stratified by class for single-label classification (every class keeps at least one image). Items that come in
groups (the slices of a volume, for 3D segmentation slice by slice) are drawn a group at a time: one labels
volumes, not slices scattered over every volume.
"""

from __future__ import annotations

import math

import numpy as np


def labelled_subset(labels: np.ndarray, fraction: float | None, per_class: int | None, seed: int,
                    stratify: bool = True, groups: np.ndarray | None = None) -> np.ndarray | None:
    """Sorted indices of the labelled training images, or None for all of them (the neutral setting).

    ``labels``: one class id per image when ``stratify`` (single-label classification); otherwise only its
    length is used and the subset is a plain random draw of ``fraction`` of the images, or, with ``groups`` (a
    group id per image), of ``fraction`` of the groups, each with all its images.
    """
    n = len(labels)
    if per_class is None and (fraction is None or fraction >= 1.0):
        return None
    rng = np.random.default_rng(seed)
    if not stratify:
        if per_class is not None:
            raise ValueError("data.labels_per_class needs single-label classification; use data.label_fraction")
        if groups is not None:
            ids = np.unique(groups)
            chosen = rng.permutation(ids)[:max(1, math.ceil(fraction * len(ids)))]
            return np.flatnonzero(np.isin(groups, chosen))
        k = max(1, math.ceil(fraction * n))
        return np.sort(rng.permutation(n)[:k])
    labels = np.asarray(labels).reshape(n)
    chosen = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        k = min(len(members), per_class) if per_class is not None else max(1, round(fraction * len(members)))
        chosen.append(rng.permutation(members)[:k])
    return np.sort(np.concatenate(chosen))
