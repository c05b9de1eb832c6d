"""MedMNIST-3D volumes: detection, slice selection and the (N, S, 1, H, W) layout."""

import numpy as np
import pytest
from conftest import shared_file, write_medmnist

from tppeft.data import detect_kind, load_dataset, load_volumes, slice_indices
from tppeft.data.medmnist import DataError


def test_slice_indices():
    assert slice_indices(28, None) == list(range(28))
    assert slice_indices(28, 8, 0.5) == [7, 9, 11, 13, 14, 16, 18, 20]  # central half, evenly spaced
    assert slice_indices(64, 1) == [32] and slice_indices(5, 5) == [0, 1, 2, 3, 4]


def test_adrenal_volumes_are_sliced_where_asked():
    path = shared_file("medmnist/adrenalmnist3d.npz")
    assert detect_kind(path) == "volume"
    ds = load_dataset(path, limit=20, slices=4, slice_span=0.5)
    assert ds.kind == "volume" and ds.num_classes == 2 and ds.task == "multiclass"
    assert ds["train"].images.shape == (20, 4, 1, 28, 28) and ds["train"].labels.shape == (20,)
    raw = np.load(path)
    first = raw["train_images"][0]
    # slice s of volume 0 is the raw depth slice slice_indices(...)[s], stored as it is (uint8)
    for s, d in enumerate(slice_indices(28, 4, 0.5)):
        assert np.array_equal(ds["train"].images[0, s, 0].numpy(), first[d])
    full = load_dataset(path, limit=5)
    assert full["test"].images.shape == (5, 28, 1, 28, 28)  # without a slice count: every slice


def test_volume_errors(tmp_path):
    path = write_medmnist(tmp_path / "v.npz", n=(4, 2, 2), size=6)
    arrays = dict(np.load(path))
    for s in ("train", "val", "test"):
        arrays[f"{s}_images"] = np.repeat(arrays[f"{s}_images"][:, None], 6, axis=1)  # (N, 6, 6, 6)
    np.savez(tmp_path / "vol.npz", **arrays)
    assert detect_kind(tmp_path / "vol.npz") == "volume"
    with pytest.raises(DataError, match="too few"):
        load_volumes(tmp_path / "vol.npz", slices=9)
    with pytest.raises(DataError, match="holds volume data"):
        load_dataset(tmp_path / "vol.npz", kind="classification")
