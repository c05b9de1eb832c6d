"""The labelled subset of few-label fine-tuning: stratified, per seed, neutral at its defaults."""

import numpy as np
import pytest

from tppeft.data.fewshot import labelled_subset


def test_neutral_settings_keep_every_image():
    labels = np.arange(10) % 2
    assert labelled_subset(labels, None, None, 0) is None
    assert labelled_subset(labels, 1.0, None, 0) is None


def test_fraction_is_stratified_and_keeps_every_class():
    labels = np.array([0] * 90 + [1] * 9 + [2] * 1)
    idx = labelled_subset(labels, 0.1, None, seed=3)
    counts = np.bincount(labels[idx], minlength=3)
    assert counts.tolist() == [9, 1, 1]  # round(0.1 * n) per class, at least one
    assert np.all(np.diff(idx) > 0)


def test_per_class_and_seeds():
    labels = np.array([0] * 20 + [1] * 3)
    idx = labelled_subset(labels, None, 5, seed=0)
    assert np.bincount(labels[idx]).tolist() == [5, 3]
    same = labelled_subset(labels, None, 5, seed=0)
    other = labelled_subset(labels, None, 5, seed=1)
    assert np.array_equal(idx, same) and not np.array_equal(idx, other)


def test_unstratified_draw_for_other_labels():
    idx = labelled_subset(np.zeros(40), 0.25, None, seed=0, stratify=False)
    assert len(idx) == 10 and len(set(idx.tolist())) == 10
    with pytest.raises(ValueError, match="labels_per_class"):
        labelled_subset(np.zeros(40), None, 2, seed=0, stratify=False)


def test_grouped_items_are_drawn_a_group_at_a_time():
    """Slices of volumes: a fraction of the volumes, each with every one of its slices."""
    groups = np.repeat(np.arange(8), [3, 5, 2, 4, 4, 1, 6, 3])
    idx = labelled_subset(np.zeros(len(groups)), 0.25, None, seed=0, stratify=False, groups=groups)
    chosen = np.unique(groups[idx])
    assert len(chosen) == 2 and np.array_equal(idx, np.flatnonzero(np.isin(groups, chosen)))
    other = [set(np.unique(groups[labelled_subset(np.zeros(len(groups)), 0.25, None, seed=s, stratify=False,
                                                     groups=groups)]).tolist()) for s in range(6)]
    assert len({frozenset(o) for o in other}) > 1  # seeds draw different volumes
