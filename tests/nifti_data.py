"""Tiny synthetic NIfTI datasets written with nibabel: an MSD folder or a CSV of image/label paths."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np

LABELS = {"0": "background", "1": "Anterior", "2": "Posterior"}


def volume_pair(shape=(10, 12, 8), seed: int = 0, scale: float = 1000.0) -> tuple[np.ndarray, np.ndarray]:
    """A float32 image (a bright blob on noise, on its own intensity scale) and a uint8 label of two boxes."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij"))
    blob = np.exp(-(grid ** 2).sum(0) * 2)
    image = ((blob + 0.1 * rng.random(shape)) * scale * (1 + seed)).astype(np.float32)
    label = np.zeros(shape, np.uint8)
    x, y, z = (s // 2 for s in shape)
    label[x - 2:x, y - 2:y + 2, z - 2:z + 2] = 1
    label[x:x + 2, y - 2:y + 2, z - 2:z + 2] = 2
    return image, label


def save(path: Path, array: np.ndarray, affine: np.ndarray | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.eye(4) if affine is None else affine), str(path))
    return path


def write_msd(root: Path, n: int = 10, shapes=None, split: dict[str, str] | None = None,
              labels: dict = LABELS) -> Path:
    """``root/{imagesTr,labelsTr}/case_XXX.nii.gz`` + ``dataset.json`` (+ ``split.csv`` when ``split`` is given)."""
    training = []
    for i in range(n):
        shape = shapes[i] if shapes else (10 + i % 3, 12, 8 + i % 2)
        image, label = volume_pair(shape, i)
        name = f"case_{i:03d}.nii.gz"
        save(root / "imagesTr" / name, image)
        save(root / "labelsTr" / name, label)
        training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
    meta = {"name": "Synthetic", "labels": labels, "modality": {"0": "MRI"}, "numTraining": n,
            "training": training, "test": []}
    (root / "dataset.json").write_text(json.dumps(meta))
    if split is not None:
        (root / "split.csv").write_text("case,split\n" + "".join(f"{k},{v}\n" for k, v in split.items()))
    return root


def write_csv(root: Path, n: int = 6, with_split: bool = True) -> Path:
    """``root/vols/img_i.nii.gz``, ``root/vols/seg_i.nii.gz`` and ``root/cases.csv`` (image,label[,split])."""
    lines = ["image,label" + (",split" if with_split else "")]
    for i in range(n):
        image, label = volume_pair((8, 9, 7), i)
        save(root / "vols" / f"img_{i}.nii.gz", image)
        save(root / "vols" / f"seg_{i}.nii.gz", label)
        split = ("train", "train", "train", "train", "val", "test")[i % 6]
        lines.append(f"vols/img_{i}.nii.gz,vols/seg_{i}.nii.gz" + (f",{split}" if with_split else ""))
    (root / "cases.csv").write_text("\n".join(lines) + "\n")
    return root / "cases.csv"
