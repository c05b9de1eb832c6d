"""Splits for data that has none (``data.split``): seeded, stratified by label, and with ``group_by`` every
image of one group (patient, exam) in one split; and the check that a given split keeps its groups apart."""

from __future__ import annotations

import warnings

import numpy as np

from tppeft.data.images import named
from tppeft.data.medmnist import SPLITS, DataError


def strata(labels: np.ndarray) -> np.ndarray:
    """One stratum id per image: its class, or (multi-label) its combination of labels."""
    if labels.ndim == 1:
        return labels
    return np.unique(labels, axis=0, return_inverse=True)[1].reshape(-1)


def draw(labels: np.ndarray, fractions: list[float], seed: int, groups: np.ndarray | None = None) -> np.ndarray:
    """Assign each image to 0 (stays) or to k = 1.. (the k-th of ``fractions``, each a fraction of the images).

    Without groups every stratum is split on its own, so each keeps at least one image that stays; with groups
    whole groups move, stratified as far as groups allow (scikit-learn's ``StratifiedGroupKFold``).
    """
    keys = strata(labels)
    if groups is not None:
        return _draw_groups(keys, groups, fractions, seed)
    rng = np.random.default_rng(seed)
    out = np.zeros(len(keys), np.int64)
    # Per stratum by hand: rounding each stratum's share keeps every class among the staying images, which
    # scikit-learn's train_test_split does not promise for rare classes.
    for key in np.unique(keys):
        members = rng.permutation(np.flatnonzero(keys == key))
        counts = [int(round(f * len(members))) for f in fractions]
        while counts and sum(counts) >= len(members):
            counts[int(np.argmax(counts))] -= 1
        start = 0
        for k, c in enumerate(counts, 1):
            out[members[start:start + c]] = k
            start += c
    return out


def _folds(fractions: list[float], n_groups: int) -> tuple[int, list[int]]:
    """The number of equal folds (2..20, at most one per group) whose multiples come closest to ``fractions``,
    and how many folds each fraction takes."""
    best = None
    for k in range(2, min(20, n_groups) + 1):
        counts = [max(1, round(f * k)) for f in fractions]
        if sum(counts) >= k:
            continue
        error = sum(abs(f - c / k) for f, c in zip(fractions, counts, strict=True))
        if best is None or error < best[0] - 1e-12:
            best = (error, k, counts)
    if best is None:
        raise DataError(f"data.split.group_by: {n_groups} group(s) are too few to draw the fractions {fractions} "
                        "of the images as whole groups")
    return best[1], best[2]


def _draw_groups(keys: np.ndarray, groups: np.ndarray, fractions: list[float], seed: int) -> np.ndarray:
    from sklearn.model_selection import StratifiedGroupKFold

    k, counts = _folds(fractions, len(np.unique(groups)))
    folds = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "least populated class has fewer members than n_splits"
        parts = [test for _, test in folds.split(np.zeros(len(keys)), keys, groups)]
    out = np.zeros(len(keys), np.int64)
    fold = 0
    for target, count in enumerate(counts, 1):
        for _ in range(count):
            out[parts[fold]] = target
            fold += 1
    return out


def check_groups(split: np.ndarray, groups: np.ndarray, source: str) -> None:
    """Every group's images in one split; else one :class:`DataError` naming the first groups that span splits."""
    spanning = []
    for g in np.unique(groups):
        where = np.unique(split[groups == g])
        if len(where) > 1:
            spanning.append(f"'{g}' ({' and '.join(SPLITS[i] for i in where)})")
    if spanning:
        raise DataError(f"{source}: {len(spanning)} group(s) have images in more than one split: {named(spanning)}; "
                        "every image of a group must be in one split")
