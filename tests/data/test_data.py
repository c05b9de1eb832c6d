import numpy as np
import pytest
import torch
from conftest import BREAST, write_medmnist

from tppeft.data import (
    augment_batch,
    input_pixels,
    iterate_batches,
    load_medmnist,
    resize_images,
    resize_masks,
    to_model_input,
)
from tppeft.data.medmnist import DataError


def test_breastmnist_is_binary_with_official_sizes():
    ds = load_medmnist(BREAST)
    assert ds.task == "multiclass" and ds.num_classes == 2
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 546, "val": 78, "test": 156}
    x = ds["train"].images
    assert x.shape[1:] == (1, 28, 28) and x.dtype == torch.uint8  # as stored: a quarter of float32's memory
    assert set(ds["test"].labels.tolist()) == {0, 1}


def test_grey_multiclass_rgb_ordinal_and_multilabel(tmp_path):
    multi = load_medmnist(write_medmnist(tmp_path / "m.npz", classes=5))
    assert multi.task == "multiclass" and multi.num_classes == 5 and multi["train"].labels.ndim == 1
    rgb = load_medmnist(write_medmnist(tmp_path / "rgb.npz", rgb=True, classes=3))
    assert rgb["val"].images.shape[1] == 3 and rgb.num_classes == 3
    # ordinal labels (e.g. RetinaMNIST grades) are classes, evaluated as MedMNIST does: multi-class
    ordinal = load_medmnist(write_medmnist(tmp_path / "o.npz", classes=5, n=(10, 5, 5)))
    assert ordinal.num_classes == 5
    ml = load_medmnist(write_medmnist(tmp_path / "ml.npz", multilabel=4))
    assert ml.task == "multilabel" and ml.num_classes == 4 and ml["test"].labels.shape[1] == 4


def test_batches_are_converted_and_resized_as_the_whole_split_would_be():
    ds = load_medmnist(BREAST, limit=50)
    train = ds["train"]
    stored = train.images
    whole = resize_images(stored.float() / 255.0, 64)  # the whole split converted and resized at once
    train.size = 64
    idx = torch.tensor([7, 0, 49, 3])
    batch = train.pixels(idx)
    assert batch.dtype == torch.float32 and batch.shape == (4, 1, 64, 64)
    assert torch.equal(batch, whole[idx])  # bit for bit: each image is resized on its own
    assert torch.equal(train.pixels(), whole) and train.images is stored and stored.dtype == torch.uint8
    assert torch.equal(input_pixels(stored[:3], 28), stored[:3].float() / 255.0)  # at its size: converted only
    volumes = stored[:6].view(2, 3, 1, 28, 28)  # (N, S, C, H, W): every slice resized alike
    assert torch.equal(input_pixels(volumes, 64), whole[:6].view(2, 3, 1, 64, 64))
    floats = torch.rand(2, 1, 28, 28)
    assert input_pixels(floats, None) is floats  # float pixels without an input size: as they are


def test_limit(tmp_path):
    ds = load_medmnist(BREAST, limit=10)
    assert all(len(s) == 10 for s in ds.splits.values())


def test_split_sha256_names_the_items_a_split_holds(tmp_path):
    """Two files that share their training and test arrays but not their validation arrays: equal digests for
    the shared splits, whatever the path; one changed pixel or label changes a digest; resized labels do not."""
    a = np.load(write_medmnist(tmp_path / "a.npz", n=(12, 6, 6), seed=0))
    b = {**a, "val_images": np.load(write_medmnist(tmp_path / "x.npz", n=(12, 6, 6), seed=1))["val_images"]}
    np.savez(tmp_path / "b.npz", **b)
    da, db = (load_medmnist(tmp_path / f"{n}.npz").splits for n in "ab")
    assert da["train"].sha256() == db["train"].sha256() and da["test"].sha256() == db["test"].sha256()
    assert da["val"].sha256() != db["val"].sha256()
    train = da["train"]
    digest = train.sha256()
    train.input_labels = train.labels.clone()  # what the model trains on, derived from the labels
    assert train.sha256() == digest
    train.labels[0] = 1 - train.labels[0]
    assert train.sha256() != digest
    train.labels[0] = 1 - train.labels[0]
    train.images[3, 0, 5, 5] ^= 1
    assert train.sha256() != digest


def test_bad_files(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="does not exist; set data.path"):
        load_medmnist(tmp_path / "nope.npz")
    monkeypatch.chdir(tmp_path)  # a relative path: the message names the folder it was looked for in
    with pytest.raises(DataError, match=f"'data/nope.npz' does not exist .*folder you run in, {tmp_path}"):
        load_medmnist("data/nope.npz")
    np.savez(tmp_path / "k.npz", train_images=np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(DataError, match="missing key"):
        load_medmnist(tmp_path / "k.npz")
    arrays = dict(np.load(write_medmnist(tmp_path / "ok.npz")))
    arrays["val_labels"] = arrays["val_labels"][:-1]
    np.savez(tmp_path / "len.npz", **arrays)
    with pytest.raises(DataError, match="val_images has 6 items but val_labels has 5"):
        load_medmnist(tmp_path / "len.npz")
    arrays = dict(np.load(write_medmnist(tmp_path / "ok.npz")))
    arrays["train_labels"] = arrays["train_labels"].astype(np.float32)
    np.savez(tmp_path / "dtype.npz", **arrays)
    with pytest.raises(DataError, match="integer labels"):
        load_medmnist(tmp_path / "dtype.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"not an \.npz archive") as refused:
        load_medmnist(tmp_path / "junk.npz")
    assert "pickle" not in str(refused.value)
    (tmp_path / "cut.npz").write_bytes((tmp_path / "ok.npz").read_bytes()[:200])  # a zip cut short
    with pytest.raises(DataError, match="cannot read as .npz"):
        load_medmnist(tmp_path / "cut.npz")


def test_resize_and_normalise():
    x = torch.rand(5, 1, 28, 28)
    y = resize_images(x, 64)
    assert y.shape == (5, 1, 64, 64)
    z = to_model_input(y, torch.tensor([0.5] * 3), torch.tensor([0.5] * 3))
    assert z.shape == (5, 3, 64, 64)
    assert torch.allclose(z[:, 0], z[:, 2]) and torch.allclose(z, y.expand(-1, 3, -1, -1) * 2 - 1)


def test_augment_is_seeded_batched_and_changes_images():
    x = torch.rand(8, 1, 64, 64)
    a = augment_batch(x, torch.Generator().manual_seed(1))
    b = augment_batch(x, torch.Generator().manual_seed(1))
    c = augment_batch(x, torch.Generator().manual_seed(2))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a, x)
    # full-scale crop with no flips is the identity
    same = augment_batch(x, torch.Generator().manual_seed(0), scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=False)
    assert torch.allclose(same, x, atol=1e-5)
    flipped = augment_batch(x, torch.Generator().manual_seed(0), scale=(1.0, 1.0), ratio=(1.0, 1.0),
                            hflip=True)
    per_image = [torch.allclose(flipped[i], x[i], atol=1e-5) or torch.allclose(flipped[i], x[i].flip(-1), atol=1e-5)
                 for i in range(8)]
    assert all(per_image)


def test_iterate_batches():
    assert [b.tolist() for b in iterate_batches(5, 2)] == [[0, 1], [2, 3], [4]]
    batches = list(iterate_batches(10, 4, torch.Generator().manual_seed(0), drop_last=True))
    assert len(batches) == 2 and len(set(torch.cat(batches).tolist())) == 8


def test_joint_augmentation_keeps_masks_aligned_and_integer():
    """The image encodes its own mask (pixel value = class / 3): after a joint crop and flips, the mask must
    still be the image's classes wherever the image is not a blend of two classes."""
    g = torch.Generator().manual_seed(0)
    masks = torch.zeros(6, 48, 48, dtype=torch.uint8)
    for i in range(6):
        masks[i, 5 + i:30 + i, 8:40 - i] = 1
        masks[i, 12:20, 20 + i:36] = 2
        masks[i, 30:44, 2 + i:14] = 3
    images = (masks.float() / 3)[:, None]
    out, moved = augment_batch(images, g, scale=(0.3, 0.8), hflip=True, vflip=True, masks=masks)
    assert moved.dtype == torch.uint8 and set(torch.unique(moved).tolist()) <= {0, 1, 2, 3}
    assert not torch.equal(moved, masks)  # it did move
    from_image = (out[:, 0] * 3).round().to(torch.uint8)
    clean = ((out[:, 0] * 3) - from_image.float()).abs() < 1e-3  # pixels not blended across a class edge
    assert clean.float().mean() > 0.8
    assert torch.equal(moved[clean], from_image[clean])
    # same generator state, same geometry for the image with or without masks
    alone = augment_batch(images, torch.Generator().manual_seed(0), scale=(0.3, 0.8), hflip=True, vflip=True)
    assert torch.equal(alone, out)


def test_resize_masks_is_nearest():
    m = torch.randint(0, 3, (2, 16, 16), dtype=torch.uint8)
    up = resize_masks(m, 64)
    assert up.shape == (2, 64, 64) and up.dtype == torch.uint8
    assert torch.equal(up[:, ::4, ::4], m)


def test_a_labelled_npz_reads_as_classification_and_a_segmentation_file_with_labels_when_asked(tmp_path):
    from tppeft.data.loading import detect_kind, load_dataset

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 10, 10), dtype=np.uint8)
    labels = np.array([0, 1, 2] * 4, np.uint8)
    split = np.array([2, 2, 2, 0, 0, 0, 0, 0, 0, 1, 1, 1], np.uint8)  # ids of split_names: val, test, train
    plain = tmp_path / "plain.npz"
    np.savez(plain, images=images, labels=labels, split=split, split_names=np.array(["test", "train", "val"]),
             class_names=np.array(["normal", "benign", "malignant"]))
    data = load_dataset(plain)
    assert (data.kind, data.task, data.num_classes, data.layout) == ("classification", "multiclass", 3,
                                                                      "labelled .npz (images, labels, split)")
    assert data.class_names == ["normal", "benign", "malignant"]
    assert [len(data[s].labels) for s in ("train", "val", "test")] == [3, 3, 6]
    assert torch.equal(data["val"].images[:, 0], torch.from_numpy(images[:3]))  # id 2 is "val" here
    assert data["test"].labels.tolist() == [0, 1, 2, 0, 1, 2]
    both = tmp_path / "both.npz"  # like the packed BUSI: masks for segmentation, labels for classification
    np.savez(both, images=images, masks=(images > 128).astype(np.uint8), labels=labels, split=split)
    assert detect_kind(both) == "segmentation" and load_dataset(both).kind == "segmentation"
    assert load_dataset(both, "classification").num_classes == 3  # split ids 0/1/2 = train/val/test
    np.savez(tmp_path / "short.npz", images=images, labels=labels, split=split,
             split_names=np.array(["train", "val", "test"]), class_names=np.array(["a", "b"]))
    with pytest.raises(DataError, match="'class_names' names 2 classes, its labels hold 3"):
        load_dataset(tmp_path / "short.npz")
    np.savez(tmp_path / "two.npz", images=images, labels=labels, split=np.minimum(split, 1))
    with pytest.raises(DataError, match="split 'test' is empty"):
        load_dataset(tmp_path / "two.npz")


def test_a_medmnist_format_file_may_name_its_classes(tmp_path):
    from tppeft.data.loading import load_dataset

    path = write_medmnist(tmp_path / "named.npz", classes=3)
    arrays = dict(np.load(path))
    np.savez(path, **arrays, class_names=np.array(["normal", "benign", "malignant"]))
    assert load_dataset(path).class_names == ["normal", "benign", "malignant"]
    assert load_dataset(write_medmnist(tmp_path / "plain.npz", classes=3)).class_names is None
    np.savez(path, **arrays, class_names=np.array(["normal", "benign"]))
    with pytest.raises(DataError, match="'class_names' names 2 classes, its labels hold 3"):
        load_dataset(path)
