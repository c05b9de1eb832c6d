"""NIfTI volumes: the MSD layout and a CSV of paths, checks of shape, affine and labels, orientation,
intensity normalisation, splits, and bad input through the command line."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import shared_file
from nifti_data import save, volume_pair, write_csv, write_msd

from tppeft.cli import main
from tppeft.data import DataError, detect_kind, load_dataset
from tppeft.data.nifti import VolumeDataConfig, load_nifti_dataset
from tppeft.data.nifti.sources import find_source, seeded_split

SPLIT = {f"case_{i:03d}": s for i, s in enumerate(["train"] * 6 + ["val"] * 2 + ["test"] * 2)}


def test_msd_folder_is_read_with_label_names_padding_and_split_file(tmp_path):
    root = write_msd(tmp_path / "msd", split=SPLIT)
    assert detect_kind(root) == "segmentation3d"
    ds = load_dataset(root)
    assert ds.kind == "segmentation3d" and ds.num_classes == 3
    assert ds.label_names == ["background", "Anterior", "Posterior"] and "split.csv" in ds.split_origin
    train = ds["train"]
    assert train.names == [f"case_{i:03d}" for i in range(6)] and len(ds["val"]) == 2 and len(ds["test"]) == 2
    # slice axis 2 (z) comes first; in-plane padded to a square of the largest side; every volume centred
    assert train.images.shape == (6, 9, 12, 12) and train.labels.dtype == torch.uint8
    assert train.extent[1].tolist() == [9, 11, 12] and train.offset[1].tolist() == [0, 0, 0]
    assert train.extent[0].tolist() == [8, 10, 12] and train.offset[0].tolist() == [0, 1, 0]
    image, label = volume_pair((10, 12, 8), 0)
    assert torch.equal(train.crop(0, train.labels[0]), torch.from_numpy(label.transpose(2, 0, 1)))
    assert train.crop(0, train.images[0]).shape == (8, 10, 12) and train.images[0, :, 0].abs().max() == 0  # padding
    # percentile scaling per volume: [0, 1], order kept, another intensity scale gives the same values
    img = train.crop(0, train.images[0]).numpy()
    assert img.min() == 0 and img.max() == 1
    raw = image.transpose(2, 0, 1)
    assert np.corrcoef(img.ravel(), np.clip(raw, *np.percentile(raw, (0.5, 99.5))).ravel())[0, 1] > 0.9999
    assert torch.equal(train.spacing[0], torch.ones(3))


def test_seeded_split_csv_source_and_slice_axis(tmp_path):
    root = write_msd(tmp_path / "msd", n=10)
    ds = load_nifti_dataset(root, VolumeDataConfig(split_seed=3, slice_axis=0))
    assert [len(ds[s]) for s in ("train", "val", "test")] == [7, 1, 2] and "seeded" in ds.split_origin
    names = sorted(f"case_{i:03d}" for i in range(10))
    expected = seeded_split(names, 3, (0.7, 0.1, 0.2))
    assert {n: "train" for n in ds["train"].names} == {n: s for n, s in expected.items() if s == "train"}
    assert ds["train"].images.shape[1] == 12  # x (up to 12 voxels) is the depth now
    again = load_nifti_dataset(root, VolumeDataConfig(split_seed=3, slice_axis=0))
    assert again["test"].names == ds["test"].names and torch.equal(again["test"].images, ds["test"].images)

    csv = write_csv(tmp_path / "c")
    assert detect_kind(csv) == "segmentation3d"
    ds = load_dataset(csv, volume=VolumeDataConfig(intensity="zscore"), limit=3)
    assert [len(ds[s]) for s in ("train", "val", "test")] == [3, 1, 1] and ds.num_classes == 3
    assert ds.label_names == ["background", "1", "2"] and "split column" in ds.split_origin
    v = ds["train"].crop(0, ds["train"].images[0])
    assert v.min() >= 0 and v.max() <= 1 and 0.4 < float(v.mean()) < 0.6  # z-scores, +-3 SD mapped to [0, 1]


def test_intensity_window_and_split_file_option(tmp_path):
    root = write_msd(tmp_path / "msd", n=10)
    split = tmp_path / "mine.csv"
    split.write_text("case,split\n" + "".join(f"{k},{v}\n" for k, v in SPLIT.items()))
    ds = load_nifti_dataset(root, VolumeDataConfig(split=str(split), intensity="window", window=(0, 500)))
    assert ds["val"].names == ["case_006", "case_007"]
    image, _ = volume_pair((10, 12, 8), 0)
    expected = np.clip(image / 500, 0, 1).transpose(2, 0, 1)
    assert np.allclose(ds["train"].crop(0, ds["train"].images[0]).numpy(), expected, atol=1e-6)


def test_orientation_is_checked_and_reoriented(tmp_path):
    root = write_msd(tmp_path / "msd", n=10, split=SPLIT)
    flipped = np.diag([-1.0, 1, 1, 1])  # case_001 stored L-R flipped: LAS instead of RAS
    for sub in ("imagesTr", "labelsTr"):
        f = root / sub / "case_001.nii.gz"
        img = nib.load(f)
        save(f, np.asarray(img.dataobj)[::-1].copy(), flipped)
    with pytest.raises(DataError, match="case_001.nii.gz: orientation LAS differs from RAS"):
        load_nifti_dataset(root)
    ds = load_nifti_dataset(root, VolumeDataConfig(orientation="RAS"))
    _, label = volume_pair((11, 12, 9), 1)
    train = ds["train"]
    assert torch.equal(train.crop(1, train.labels[1]), torch.from_numpy(label.transpose(2, 0, 1)))


def test_shared_split_file_is_the_documented_seeded_split():
    """The shared Hippocampus split.csv is sorted names permuted by default_rng(42), 70/10/20."""
    path = shared_file("segmentation3d/hippocampus/split.csv")
    source = find_source(path.parent)
    assert len(source.cases) == 260 and source.label_names == {0: "background", 1: "Anterior", 2: "Posterior"}
    given = dict(line.split(",") for line in path.read_text().split()[1:])
    assert seeded_split([c.name for c in source.cases], 42, (0.7, 0.1, 0.2)) == given


def _bad_msd(t: Path, change) -> list[str]:
    root = write_msd(t / "msd", n=10, split=SPLIT)
    change(root)
    return ["data.path=" + str(root)]


def _relabel(root: Path) -> None:
    f = root / "labelsTr" / "case_002.nii.gz"
    label = np.asarray(nib.load(f).dataobj).copy()
    label[0, 0, 0] = 3
    save(f, label)


def _rewrite(sub: str, name: str, array=None, affine=None):
    def change(root: Path) -> None:
        f = root / sub / name
        img = nib.load(f)
        save(f, np.asarray(img.dataobj) if array is None else array, img.affine if affine is None else affine)
    return change


SHIFTED = np.eye(4)
SHIFTED[0, 3] = 2.0
CASES = [
    ("image without label", lambda r: (r / "labelsTr" / "case_004.nii.gz").unlink(),
     ["case_004.nii.gz", "no label file"]),
    ("shapes differ", _rewrite("labelsTr", "case_003.nii.gz", np.zeros((7, 7, 7), np.uint8)),
     ["labelsTr/case_003.nii.gz", "shape (7, 7, 7) differs from its image's (10, 12, 9)"]),
    ("affines differ", _rewrite("labelsTr", "case_005.nii.gz", affine=SHIFTED),
     ["labelsTr/case_005.nii.gz", "affine differs"]),
    ("label not in dataset.json", _relabel, ["labelsTr/case_002.nii.gz", "label value(s) [3] not in dataset.json"]),
    ("2D image", _rewrite("imagesTr", "case_006.nii.gz", np.zeros((10, 12), np.float32)),
     ["imagesTr/case_006.nii.gz", "a 2D image", "expected a 3D volume"]),
    ("4D file", _rewrite("imagesTr", "case_007.nii.gz", np.zeros((10, 12, 8, 2), np.float32)),
     ["imagesTr/case_007.nii.gz", "a 4D file"]),
    ("case missing from split file", lambda r: (r / "split.csv").write_text("case,split\ncase_000,train\n"),
     ["split.csv", "case 'case_001' has no split"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_volumes_exit_2_with_one_line_and_no_output(case, tmp_path, capsys):
    _, change, expected = case
    out = tmp_path / "out"
    sets = [a for s in _bad_msd(tmp_path, change) for a in ("--set", s)]
    code = main(["run", "-o", str(out), "--set", "threads=1", *sets])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("tppeft: error:")]
    assert code == 2 and len(errors) == 1 and "Traceback" not in err, err
    assert all(text in errors[0] for text in expected), errors[0]
    assert not out.exists()


def test_lone_nifti_file_and_bad_dataset_json(tmp_path):
    f = save(tmp_path / "one.nii.gz", np.zeros((4, 4, 4), np.float32))
    with pytest.raises(DataError, match="one.nii.gz: a single NIfTI file"):
        detect_kind(f)
    root = write_msd(tmp_path / "msd", n=10)
    (root / "dataset.json").write_text(json.dumps({"name": "x"}))
    with pytest.raises(DataError, match="dataset.json: not an MSD dataset.json"):
        load_dataset(root)
