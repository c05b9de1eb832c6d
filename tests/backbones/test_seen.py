"""What a backbone saw in pre-training, from its metadata."""

import json

import numpy as np
import torch
from conftest import shared_file

from tppeft.backbones.seen import seen_by_name, set_stem
from tppeft.bundled import resolve
from tppeft.data.overlap import found_in, image_keys, keys_from_bytes


def test_a_pre_training_set_is_the_run_s_data_set_by_name_without_split_or_size_suffixes():
    assert [set_stem(n) for n in ("brain_mri_train.npz", "brain_mri_64", "adrenalmnist3d_train_central_slices",
                                  "busi_train", "breastmnist", "hippocampus_train_slices.npz")] == [
        "brain_mri", "brain_mri", "adrenalmnist3d", "busi", "breastmnist", "hippocampus"]
    b0 = {"trained_on": [["pneumoniamnist", 4708], ["breastmnist", 546], ["busi_train", 546]]}
    clean = {"trained_on": [{"file": "brain_mri_train.npz", "sha256": "ab", "splits": {"train": 4117}}]}
    assert seen_by_name(b0, "breastmnist") == ["breastmnist"] and seen_by_name(b0, "busi") == ["busi_train"]
    assert seen_by_name(b0, "hippocampus") == [] and seen_by_name({}, "breastmnist") == []
    assert seen_by_name(clean, "brain_mri_64") == ["brain_mri_train.npz"] and seen_by_name(clean, "breastmnist") == []


def _b0_saw(images: np.ndarray) -> int:
    """How many (N, H, W) images the bundled b0's pool keys hold, at b0's input size."""
    b0 = resolve("bundled:b0").parent
    keys = json.loads((b0 / "b0_meta.json").read_text())["pool_keys"]
    pool = keys_from_bytes((b0 / keys["file"]).read_bytes())
    return sum(found_in(image_keys(torch.from_numpy(images)[:, None], keys["image_size"]), pool))


def test_the_bundled_b0_keys_its_pool_by_scan_across_breastmnist_and_busi():
    # BreastMNIST's validation and test images are BUSI scans; b0 saw about 70% of them as BUSI training images
    breast = np.load(resolve("bundled:breastmnist"))
    assert [_b0_saw(breast[f"{s}_images"]) for s in ("train", "val", "test")] == [546, 58, 103]
    busi = np.load(shared_file("segmentation/busi/busi_256.npz"))
    assert [_b0_saw(busi["images"][busi["split"] == k]) for k in range(3)] == [546, 56, 105]
    pneumonia = np.load(shared_file("medmnist/pneumoniamnist.npz"))
    # its validation split holds 8 exact copies of training images; b0 saw no test image
    assert [_b0_saw(pneumonia[f"{s}_images"]) for s in ("train", "val", "test")] == [4708, 8, 0]
