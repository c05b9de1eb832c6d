"""Key b0's pre-training pool image by image, so that a run on b0 counts the images of its data b0 saw.

b0's metadata names its pool by data set only (PneumoniaMNIST, BreastMNIST and BUSI training splits, AdrenalMNIST3D
slices), so a run could only be told "by name". This script writes ``b0_pool_keys.bin`` beside the bundled b0 (a
key per image, :mod:`tppeft.data.overlap`, at b0's 64 px, as ``tppeft backbone-pretrain`` writes for its own
backbones) and adds its ``pool_keys`` entry to ``b0_meta.json``. Keyed, from DATA_DIR (the shared data folder):

- PneumoniaMNIST's and BreastMNIST's training images, as their 28 px files store them;
- every BUSI scan in the pool, in each stored form a run reads it in: ``busi_256.npz`` brought to 64 px by the
  model's input, and the 64 px and 28 px files of ``pack_pool.py``;
- BreastMNIST and BUSI are the same 780 scans (BreastMNIST: MedMNIST's centre crop at 28 px; b0's pool held
  BUSI's training split under the packed file's seed-42 split, and BreastMNIST's own training split). Each
  BreastMNIST image is matched to its BUSI scan (its 28 px thumbnail against the scan's centre square at 28 px;
  every one of the 780 correlates at 0.999 or more with its scan), so a BreastMNIST validation or test image whose
  scan b0 saw as a BUSI training image is keyed, and a BUSI validation or test scan b0 saw as a BreastMNIST
  training image is keyed in each of its forms.

AdrenalMNIST3D's slices are not keyed: b0's record does not say which axis its "three central slices" were cut
along. Prints, per data set and split, how many images b0's pool holds.

    python benchmarks/validity/b0_pool_keys.py DATA_DIR [ASSET_DIR]   # ASSET_DIR: src/tppeft/assets/b0
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from pack_pool import _resize

from tppeft.data.overlap import found_in, image_keys, keys_bytes

SIZE = 64  # b0's input size
MATCH = 0.99  # a BreastMNIST image and its BUSI scan correlate at 0.999 or more; the next-best scan at 0.99 or less
SPLITS = ("train", "val", "test")


def _keys(images: np.ndarray) -> list[bytes | None]:
    """Keys of (N, H, W) uint8 images as a run at b0's size sees them."""
    return image_keys(torch.from_numpy(images)[:, None], SIZE)


def _z(images: np.ndarray) -> np.ndarray:
    """(N, H, W) images z-normalised to unit length, compared at MedMNIST's 28 px rather than as
    :func:`tppeft.data.overlap.thumbnails` (32 px from the full crop): there the best match falls to 0.967 and
    changes for some images."""
    x = images.reshape(len(images), -1).astype(np.float64)
    x = x - x.mean(1, keepdims=True)
    return x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-9)


def _centre_square(image: np.ndarray, orig_hw: np.ndarray, size: int = 28) -> np.ndarray:
    """The centre square of the original scan (stored stretched to a square) at ``size`` px, as MedMNIST cut it."""
    h, w = (int(v) for v in orig_hw)
    side = image.shape[0]
    cut = int(round(side * (1 - min(h, w) / max(h, w)) / 2))
    square = image[:, cut:side - cut] if w > h else image[cut:side - cut, :]
    t = torch.from_numpy(square.astype(np.float32))[None, None]
    return F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0, 0].numpy()


def breast_scans(breast: dict[str, np.ndarray], busi) -> dict[str, np.ndarray]:
    """Per BreastMNIST split, the index of each image's BUSI scan."""
    squares = np.stack([_centre_square(im, hw) for im, hw in zip(busi["images"], busi["orig_hw"], strict=True)])
    out = {}
    for split in SPLITS:
        corr = _z(breast[f"{split}_images"]) @ _z(squares).T
        best = corr.argmax(1)
        if (low := corr.max(1) < MATCH).any():
            raise SystemExit(f"{int(low.sum())} BreastMNIST {split} images match no BUSI scan at {MATCH} or more")
        out[split] = best
    return out


def main(data: Path, asset: Path) -> None:
    pneumonia = np.load(data / "medmnist" / "pneumoniamnist.npz")
    breast = dict(np.load(data / "medmnist" / "breastmnist.npz"))
    busi = np.load(data / "segmentation" / "busi" / "busi_256.npz")
    scans = breast_scans(breast, busi)
    pool_scans = set(np.flatnonzero(busi["split"] == 0).tolist()) | set(scans["train"].tolist())
    busi_forms = {"busi_256": _keys(busi["images"]), "busi_64": _keys(_resize(busi["images"], SIZE)),
                  "busi_28": _keys(_resize(busi["images"], 28))}
    breast_keys = {s: _keys(breast[f"{s}_images"]) for s in SPLITS}
    keys = _keys(pneumonia["train_images"]) + breast_keys["train"]
    keys += [k for s in ("val", "test") for k, scan in zip(breast_keys[s], scans[s], strict=True) if scan in pool_scans]
    keys += [form[i] for form in busi_forms.values() for i in sorted(pool_scans)]
    unique = list(dict.fromkeys(k for k in keys if k is not None))
    blob = keys_bytes(unique)
    (asset / "b0_pool_keys.bin").write_bytes(blob)
    meta_path = asset / "b0_meta.json"
    meta = json.loads(meta_path.read_text())
    meta["pool_keys"] = {
        "file": "b0_pool_keys.bin", "image_size": SIZE, "images": len(unique),
        "note": ("PneumoniaMNIST's and BreastMNIST's training images and every BUSI scan in the pool in each stored "
                 "form (BUSI at 256, 64 and 28 px; BreastMNIST's 28 px crop), so that an image of either counts as "
                 "seen when its scan was in the pool under the other's split; AdrenalMNIST3D's slices are not "
                 "keyed"),
    }
    meta_path.write_text(json.dumps(meta, indent=1) + "\n")
    print(f"wrote {len(unique):,} keys ({len(blob):,} bytes) to {asset / 'b0_pool_keys.bin'}; "
          f"{len(pool_scans)} of BUSI's 780 scans were in b0's pool\n")
    pool = list(unique)
    rows = [("pneumoniamnist", s, _keys(pneumonia[f"{s}_images"])) for s in SPLITS]
    rows += [("breastmnist", s, breast_keys[s]) for s in SPLITS]
    for name, form in busi_forms.items():
        rows += [(name, s, [form[i] for i in np.flatnonzero(busi["split"] == j)]) for j, s in enumerate(SPLITS)]
    print(f"| {'data':<15} | split | images | in b0's pool |")
    print(f"|{'-' * 17}|-------|--------|--------------|")
    for name, split, split_keys in rows:
        print(f"| {name:<15} | {split:<5} | {len(split_keys):>6,} | {sum(found_in(split_keys, pool)):>12,} |")


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        raise SystemExit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) == 3 else
         Path(__file__).resolve().parents[2] / "src" / "tppeft" / "assets" / "b0")
