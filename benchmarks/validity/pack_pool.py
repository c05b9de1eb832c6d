"""Pack the clean backbone's unlabelled pool (training splits only, none of BreastMNIST or BUSI) and the study's
labelled files at 64 px.

Makes OUT_DIR a pool folder for ``backbone_pretrain.data_root`` (see ``configs/backbone_clean_breast.yaml``):
links to the PneumoniaMNIST and AdrenalMNIST3D (64 px) files of DATA_DIR and two packed MedMNIST-format files
(``train_images`` only, uint8, 64x64):

- ``hippocampus_train_slices.npz``: the 8 central slices (first axis) of every MSD Hippocampus training volume,
  each volume scaled on its own (0.5-99.5 percentile clip to 0..255; intensities differ wildly between cases);
- ``brain_mri_train.npz``: every training image of the brain MRI image folder, resized 128 -> 64 (antialiased);
- ``brain_mri_64.npz``: the whole brain MRI set the same way as a labelled MedMNIST-format file (train/val/test
  images and labels; classes in sorted folder order: glioma, meningioma, notumor, pituitary), for the study's
  comparisons at the backbone's 64 px;
- ``brain_mri_64_binary.npz``: the same images and split with two classes (0 no tumour, 1 tumour: glioma,
  meningioma or pituitary), the four-class task made binary;
- ``brain_mri_64_valtest.npz``: the same with validation drawn like test: its test split is the 200 Testing images
  that ``data.limit: 200`` takes from ``brain_mri_64.npz`` (the same images, so test scores compare), and its
  validation split 200 other Testing images, evenly spaced, none a near-twin of those 200 (correlation >= 0.98 at
  32x32, the data's own cleaning criterion; the Testing folder holds exact duplicates). Training is unchanged;
- ``busi_64.npz``: BUSI's 780 images as a labelled MedMNIST-format file for 3-class classification (0 normal,
  1 benign, 2 malignant), resized 256 -> 64 (antialiased), in the packed file's own 546/78/156 split; not pool
  images, a second breast-ultrasound target for the backbone that never saw one;
- ``busi_64_binary.npz``: the same images and split with BreastMNIST's two classes (0 malignant, 1 normal or
  benign), and ``busi_28.npz``: the three classes with the images resized 256 -> 28 (antialiased), BreastMNIST's
  size, which the model's input resizes to 64 as it does BreastMNIST's: BUSI with one of the two ways BreastMNIST
  differs from it changed at a time;
- ``pneumonia_546.npz``: PneumoniaMNIST (0 normal, 1 pneumonia; 28 px) with BreastMNIST's split sizes where they
  cost: 546 training and 78 validation images, evenly spaced through its own splits (as ``data.limit`` takes them;
  validation is scored every epoch), and all 624 test images.

The labelled files carry ``class_names``, so their comparisons' reports name each class's one-vs-rest AUC.

    python benchmarks/validity/pack_pool.py DATA_DIR OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from tppeft.data.medmnist import subset

SIZE = 64
SLICES = 8
BREASTMNIST_SIZE = 28


def _resize(images: np.ndarray, size: int = SIZE) -> np.ndarray:
    x = torch.from_numpy(images).float()[:, None]
    y = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return y[:, 0].round().clamp(0, 255).to(torch.uint8).numpy()


def hippocampus(data: Path) -> np.ndarray:
    z = np.load(data / "segmentation3d" / "hippocampus_3d.npz")
    volumes = z["images"][z["split"] == 0].astype(np.float32)  # split 0 = train
    out = []
    for v in volumes:
        lo, hi = np.percentile(v, [0.5, 99.5])
        v = np.clip((v - lo) / max(hi - lo, 1e-6), 0, 1) * 255
        first = v.shape[0] // 2 - SLICES // 2
        out.append(v[first:first + SLICES])
    return _resize(np.concatenate(out).round().astype(np.uint8))


def brain_mri(data: Path, split: str = "train") -> np.ndarray:
    files = sorted((data / "classification" / "brain_mri" / split).glob("*/*.png"))
    return _resize(np.stack([np.asarray(Image.open(f).convert("L")) for f in files]))


def brain_mri_labelled(data: Path) -> dict[str, np.ndarray]:
    root = data / "classification" / "brain_mri"
    classes = sorted(d.name for d in (root / "train").iterdir() if d.is_dir())
    out = {"class_names": np.array(classes)}
    for split in ("train", "val", "test"):
        files = sorted((root / split).glob("*/*.png"))
        out[f"{split}_images"] = brain_mri(data, split)
        out[f"{split}_labels"] = np.array([[classes.index(f.parent.name)] for f in files], np.int64)
    return out


def brain_mri_binary(labelled: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``labelled`` (the four brain MRI classes) with two: 0 no tumour, 1 tumour (any of the other three)."""
    none = list(labelled["class_names"]).index("notumor")
    out = {k: (v != none).astype(np.int64) if k.endswith("_labels") else v for k, v in labelled.items()}
    return out | {"class_names": np.array(["no tumour", "tumour"])}


def busi_labelled(data: Path, size: int = SIZE, binary: bool = False) -> dict[str, np.ndarray]:
    """BUSI's images at ``size`` px, 3 classes (0 normal, 1 benign, 2 malignant) or, ``binary``, BreastMNIST's two
    (0 malignant, 1 normal or benign)."""
    z = np.load(data / "segmentation" / "busi" / "busi_256.npz")
    images, labels, split = _resize(z["images"], size), z["labels"].astype(np.int64), z["split"]
    if binary:
        labels = (labels != 2).astype(np.int64)
    out = {"class_names": np.array(["malignant", "normal or benign"] if binary else ["normal", "benign", "malignant"])}
    for i, name in enumerate(("train", "val", "test")):  # the packed file's split ids 0/1/2
        out[f"{name}_images"], out[f"{name}_labels"] = images[split == i], labels[split == i, None]
    return out


def thumbnails(images: np.ndarray) -> np.ndarray:
    """Images at 32x32, each z-normalised and flattened, so that a dot product / 1024 is their correlation."""
    x = torch.from_numpy(images).float()[:, None]
    t = torch.nn.functional.interpolate(x, size=(32, 32), mode="bilinear", antialias=True, align_corners=False)
    t = t.reshape(len(images), -1)
    t = (t - t.mean(1, keepdim=True)) / t.std(1, keepdim=True).clamp_min(1e-6)
    return t.numpy()


def val_from_test(labelled: dict[str, np.ndarray], n: int = 200, near: float = 0.98) -> dict[str, np.ndarray]:
    """``labelled`` with its test split cut to the ``n`` images ``data.limit: n`` would take, and its validation
    split ``n`` other test images, evenly spaced, none a near-twin (correlation >= ``near``) of a kept test image."""
    images, labels = labelled["test_images"], labelled["test_labels"]
    test = subset(len(images), n)  # as data.limit takes them
    rest = np.setdiff1d(np.arange(len(images)), test)
    thumbs = thumbnails(images)
    best = (thumbs[rest] @ thumbs[test].T / thumbs.shape[1]).max(1)
    rest = rest[best < near]
    val = rest[subset(len(rest), n)]
    print(f"brain_mri_64_valtest: {len(images) - len(test) - len(rest)} Testing images left out as near-twins of "
          f"the {len(test)} test images; validation {len(val)} of the other {len(rest)}")
    return {**labelled, "val_images": images[val], "val_labels": labels[val],
            "test_images": images[test], "test_labels": labels[test]}


LINKED = ("pneumoniamnist.npz", "adrenalmnist3d_64.npz")


def pneumonia_breast_sized(data: Path, train: int = 546, val: int = 78) -> dict[str, np.ndarray]:
    """PneumoniaMNIST cut to BreastMNIST's training and validation sizes (evenly spaced); every test image."""
    with np.load(data / "medmnist" / "pneumoniamnist.npz") as npz:
        full = {k: npz[k] for k in npz.files}
    out = {"class_names": np.array(["normal", "pneumonia"])}
    for split, n in (("train", train), ("val", val), ("test", None)):
        keep = subset(len(full[f"{split}_images"]), n)
        out |= {f"{split}_images": full[f"{split}_images"][keep], f"{split}_labels": full[f"{split}_labels"][keep]}
    return out


def main(data: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name in LINKED:
        link = out / name
        link.unlink(missing_ok=True)
        link.symlink_to((data / "medmnist" / name).resolve())
        print(f"{name}: linked")
    for name, images in (("hippocampus_train_slices", hippocampus(data)), ("brain_mri_train", brain_mri(data))):
        np.savez_compressed(out / f"{name}.npz", train_images=images)
        print(f"{name}: {images.shape[0]} images {images.shape[1:]} -> {out / (name + '.npz')}")
    labelled = brain_mri_labelled(data)
    np.savez_compressed(out / "brain_mri_64.npz", **labelled)
    print(f"brain_mri_64: labelled train/val/test -> {out / 'brain_mri_64.npz'}")
    np.savez_compressed(out / "brain_mri_64_valtest.npz", **val_from_test(labelled))
    print(f"brain_mri_64_valtest: validation from Testing -> {out / 'brain_mri_64_valtest.npz'}")
    for name, arrays, classes in (
        ("brain_mri_64_binary", brain_mri_binary(labelled), "no tumour, tumour"),
        ("busi_64", busi_labelled(data), "normal, benign, malignant"),
        ("busi_64_binary", busi_labelled(data, binary=True), "malignant, normal or benign"),
        ("busi_28", busi_labelled(data, BREASTMNIST_SIZE), "normal, benign, malignant"),
        ("pneumonia_546", pneumonia_breast_sized(data), "normal, pneumonia"),
    ):
        np.savez_compressed(out / f"{name}.npz", **arrays)
        counts = {k[:-7]: np.bincount(v[:, 0]).tolist() for k, v in arrays.items() if k.endswith("_labels")}
        print(f"{name}: labelled train/val/test, images per class ({classes}) {counts} -> {out / (name + '.npz')}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
