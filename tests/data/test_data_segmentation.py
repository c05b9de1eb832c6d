"""Segmentation readers: the packed .npz (real BUSI and synthetic), the image/mask folder, and detection."""

import numpy as np
import pytest
import torch
from conftest import BREAST, shared_file, write_segmentation_npz
from PIL import Image

from tppeft.data import detect_kind, load_dataset, load_segmentation_folder, load_segmentation_npz
from tppeft.data.medmnist import DataError


def test_busi_npz_has_its_documented_splits_and_binary_masks():
    path = shared_file("segmentation/busi/busi_256.npz")
    assert detect_kind(path) == "segmentation"
    ds = load_segmentation_npz(path, limit=40)
    assert ds.kind == "segmentation" and ds.num_classes == 2
    train = ds["train"]
    assert train.images.shape == (40, 1, 256, 256) and train.labels.shape == (40, 256, 256)
    assert train.labels.dtype == torch.uint8 and set(torch.unique(train.labels).tolist()) == {0, 1}
    # the limit takes images evenly spaced through a split that is ordered by class: lesions and normals both
    has_lesion = (train.labels.flatten(1) > 0).any(1)
    assert 0 < int(has_lesion.sum()) < 40
    raw = np.load(path)
    train_idx = np.flatnonzero(raw["split"] == 0)
    assert np.array_equal(train.labels[0].numpy(), raw["masks"][train_idx[0]])
    assert np.array_equal(train.labels[-1].numpy(), raw["masks"][train_idx[-1]])


def test_full_busi_split_sizes():
    ds = load_dataset(shared_file("segmentation/busi/busi_256.npz"))
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 546, "val": 78, "test": 156}


def test_synthetic_npz_rgb_and_multiclass(tmp_path):
    ds = load_segmentation_npz(write_segmentation_npz(tmp_path / "s.npz", rgb=True, classes=4, n=(8, 4, 4)))
    assert ds.num_classes == 4 and ds["train"].images.shape == (8, 3, 32, 32)
    assert {len(v) for v in ds.splits.values()} == {8, 4}


def test_bad_segmentation_npz(tmp_path):
    arrays = dict(np.load(write_segmentation_npz(tmp_path / "ok.npz")))
    bad = {**arrays, "masks": arrays["masks"][:, :16]}
    np.savez(tmp_path / "shape.npz", **bad)
    with pytest.raises(DataError, match="'masks' has shape"):
        load_segmentation_npz(tmp_path / "shape.npz")
    np.savez(tmp_path / "split.npz", **{**arrays, "split": arrays["split"] + 1})
    with pytest.raises(DataError, match="0/1/2"):
        load_segmentation_npz(tmp_path / "split.npz")
    np.savez(tmp_path / "float.npz", **{**arrays, "masks": arrays["masks"].astype(np.float32)})
    with pytest.raises(DataError, match="integer class ids"):
        load_segmentation_npz(tmp_path / "float.npz")


def _write_folder(root, sizes=(4, 2, 2), size=24, mask_suffix=""):
    rng = np.random.default_rng(0)
    for split, count in zip(("train", "val", "test"), sizes, strict=True):
        (root / split / "images").mkdir(parents=True)
        (root / split / "masks").mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 256, (size, size), dtype=np.uint8)
            Image.fromarray(pixels).save(root / split / "images" / f"c{i}.png")
            mask = np.zeros((size, size), np.uint8)
            mask[2:10, 3 + i:12 + i] = 255  # exported black/white
            Image.fromarray(mask).save(root / split / "masks" / f"c{i}{mask_suffix}.png")
    return root


def test_image_mask_folder(tmp_path):
    root = _write_folder(tmp_path / "pairs", mask_suffix="_mask")
    assert detect_kind(root) == "segmentation"
    ds = load_dataset(root)
    assert ds.kind == "segmentation" and ds.num_classes == 2
    assert ds["train"].images.shape == (4, 1, 24, 24) and ds["val"].labels.shape == (2, 24, 24)
    assert set(torch.unique(ds["train"].labels).tolist()) == {0, 1}  # 255 read as class 1
    assert int(ds["train"].labels[1].sum()) == 8 * 9
    assert len(load_segmentation_folder(root, limit=3)["train"]) == 3


def test_bad_folders(tmp_path):
    root = _write_folder(tmp_path / "f")
    (root / "val" / "masks" / "c1.png").unlink()
    with pytest.raises(DataError, match="no mask for it"):
        load_segmentation_folder(root)
    root = _write_folder(tmp_path / "g")
    Image.fromarray(np.zeros((30, 30), np.uint8)).save(root / "test" / "images" / "c1.png")
    with pytest.raises(DataError, match="differs from"):
        load_segmentation_folder(root)
    with pytest.raises(DataError, match="sub-folders"):
        load_segmentation_folder(tmp_path)


def test_task_type_must_match_the_data(tmp_path):
    seg = write_segmentation_npz(tmp_path / "s.npz")
    with pytest.raises(DataError, match="holds segmentation data but task.type is 'classification'"):
        load_dataset(seg, kind="classification")
    with pytest.raises(DataError, match="holds classification data"):
        load_dataset(BREAST, kind="segmentation")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(DataError, match="not a known data layout"):
        detect_kind(tmp_path / "other.npz")
