"""data.split: stratified per class, seeded, groups kept whole, and the check of a given split's groups."""

from __future__ import annotations

import numpy as np
import pytest

from tppeft.data import DataError
from tppeft.data.split import _folds, check_groups, draw


def test_draw_is_stratified_exact_and_seeded():
    labels = np.repeat([0, 1, 2], [50, 30, 20])
    out = draw(labels, [0.1, 0.2], seed=3)
    for c, n in ((0, 50), (1, 30), (2, 20)):
        got = np.bincount(out[labels == c], minlength=3)
        assert got.tolist() == [n - round(0.1 * n) - round(0.2 * n), round(0.1 * n), round(0.2 * n)]
    assert np.array_equal(out, draw(labels, [0.1, 0.2], seed=3))
    assert not np.array_equal(out, draw(labels, [0.1, 0.2], seed=4))


def test_a_rare_class_keeps_a_training_image():
    labels = np.array([0] * 20 + [1, 1])
    for seed in range(5):
        out = draw(labels, [0.4, 0.4], seed)
        assert (out[labels == 1] == 0).any()


def test_multilabel_rows_are_stratified_by_combination():
    labels = np.array([[1, 0]] * 10 + [[0, 1]] * 10 + [[1, 1]] * 10)
    out = draw(labels, [0.2], seed=0)
    assert [int((out[i * 10:(i + 1) * 10] == 1).sum()) for i in range(3)] == [2, 2, 2]


def test_groups_stay_whole_and_fractions_are_close():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(100), 4)
    labels = rng.integers(0, 3, 400)
    out = draw(labels, [0.1, 0.2], seed=1, groups=groups)
    for g in range(100):
        assert len(set(out[groups == g])) == 1
    assert np.bincount(out).tolist() == [280, 40, 80]  # 10 equal folds: 1 for val, 2 for test
    assert _folds([0.1, 0.2], 100) == (10, [1, 2]) and _folds([0.15, 0.15], 100) == (20, [3, 3])
    with pytest.raises(DataError, match="too few"):
        draw(labels[:8], [0.1, 0.2], seed=0, groups=np.array([0, 0, 0, 0, 1, 1, 1, 1]))


def test_check_groups_names_the_groups_across_splits():
    split = np.array([0, 0, 1, 2, 2])
    check_groups(split, np.array(["a", "a", "b", "c", "c"]), "m.csv")
    with pytest.raises(DataError, match=r"m.csv: 1 group\(s\) have images in more than one split: 'a' \(train and va"):
        check_groups(split, np.array(["a", "a", "a", "c", "c"]), "m.csv")
