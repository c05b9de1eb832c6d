"""Few labels: the labelled subset of the training split that fine-tuning sees (``data.label_fraction``,
``data.labels_per_class``). The TPP stage still sees every training image, without labels.

The subset is drawn per seed from its own random stream, identically in every arm of that seed, and
stratified by class for single-label classification (every class keeps at least one image).
"""

from __future__ import annotations

import math

import numpy as np


def labelled_subset(labels: np.ndarray, fraction: float | None, per_class: int | None, seed: int,
                    stratify: bool = True) -> np.ndarray | None:
    """Sorted indices of the labelled training images, or None for all of them (the neutral setting).

    ``labels``: one class id per image when ``stratify`` (single-label classification); otherwise only its
    length is used and the subset is a plain random draw of ``fraction`` of the images.
    """
    n = len(labels)
    if per_class is None and (fraction is None or fraction >= 1.0):
        return None
    rng = np.random.default_rng(seed)
    if not stratify:
        if per_class is not None:
            raise ValueError("data.labels_per_class needs single-label classification; use data.label_fraction")
        k = max(1, math.ceil(fraction * n))
        return np.sort(rng.permutation(n)[:k])
    labels = np.asarray(labels).reshape(n)
    chosen = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        k = min(len(members), per_class) if per_class is not None else max(1, round(fraction * len(members)))
        chosen.append(rng.permutation(members)[:k])
    return np.sort(np.concatenate(chosen))
