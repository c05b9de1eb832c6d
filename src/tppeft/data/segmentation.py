"""Readers for segmentation data: a packed ``.npz`` (``images``, ``masks``, ``split``) or a folder of
image/mask file pairs. Masks are integer class ids, 0 = background, kept at their stored resolution."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tppeft.data.medmnist import SPLITS, DataError, ImageDataset, Split, open_npz, pixels_to_tensor, subset, where

SEGMENTATION_KEYS = ("images", "masks", "split")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def _image_tensor(arr: np.ndarray, key: str, path: Path) -> torch.Tensor:
    if arr.ndim == 3:
        arr = arr[:, None]
    elif arr.ndim == 4 and arr.shape[-1] in (1, 3):
        arr = arr.transpose(0, 3, 1, 2)
    else:
        raise DataError(f"{path}: '{key}' has shape {arr.shape}; expected (N,H,W) or (N,H,W,3)")
    return pixels_to_tensor(arr, key, path)


def _mask_tensor(arr: np.ndarray, images: torch.Tensor, key: str, path: Path) -> torch.Tensor:
    if not np.issubdtype(arr.dtype, np.integer) and arr.dtype != np.bool_:
        raise DataError(f"{path}: '{key}' has dtype {arr.dtype}; expected integer class ids")
    if arr.shape != (images.shape[0], *images.shape[-2:]):
        raise DataError(f"{path}: '{key}' has shape {arr.shape} but the images are "
                        f"{(images.shape[0], *images.shape[-2:])}; expected one (H,W) mask per image")
    if arr.size and (arr.min() < 0 or arr.max() > 255):
        raise DataError(f"{path}: '{key}' holds class ids outside 0..255")
    return torch.from_numpy(arr.astype(np.uint8))


def _dataset(name: str, splits: dict[str, Split], path: Path) -> ImageDataset:
    for s, split in splits.items():
        if len(split) == 0:
            raise DataError(f"{path}: split '{s}' is empty")
    channels = {v.images.shape[1] for v in splits.values()}
    if len(channels) != 1:
        raise DataError(f"{path}: splits disagree on image channels {channels}")
    num_classes = max(2, max(int(v.labels.max()) for v in splits.values()) + 1)
    return ImageDataset(name, splits, "multiclass", num_classes, kind="segmentation")


def load_segmentation_npz(path: str | Path, limit: int | None = None) -> ImageDataset:
    """``images`` (N,H,W) or (N,H,W,3), ``masks`` (N,H,W) class ids, ``split`` (N,) 0/1/2 = train/val/test."""
    path = Path(path)
    with open_npz(path) as npz:
        missing = [k for k in SEGMENTATION_KEYS if k not in npz.files]
        if missing:
            raise DataError(f"{path}: missing key(s) {missing}; a segmentation file has 'images', 'masks' "
                            "and 'split' (0/1/2 = train/val/test)")
        images = _image_tensor(npz["images"], "images", path)
        masks = _mask_tensor(npz["masks"], images, "masks", path)
        split = npz["split"]
    if split.shape != (len(images),) or not np.isin(split, (0, 1, 2)).all():
        raise DataError(f"{path}: 'split' must be shape ({len(images)},) with values 0/1/2 (train/val/test)")
    splits = {}
    for i, s in enumerate(SPLITS):
        members = np.flatnonzero(split == i)
        idx = torch.from_numpy(members[subset(len(members), limit)])
        splits[s] = Split(images[idx], masks[idx])
    return _dataset(path.stem, splits, path)


def _read_image(file: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(file) as im:
            return np.asarray(im.convert("RGB" if im.mode in ("RGB", "RGBA", "P", "CMYK") else "L"))
    except OSError as e:
        raise DataError(f"{file}: cannot read as an image ({e})") from None


def _read_mask(file: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(file) as im:
            arr = np.asarray(im if im.mode in ("L", "P", "I", "I;16", "1") else im.convert("L"))
    except OSError as e:
        raise DataError(f"{file}: cannot read as a mask ({e})") from None
    arr = arr.astype(np.int64)
    if set(np.unique(arr).tolist()) <= {0, 255}:  # binary masks exported as black/white
        arr = arr // 255
    return arr


def _pairs(split_dir: Path) -> list[tuple[Path, Path]]:
    img_dir, mask_dir = split_dir / "images", split_dir / "masks"
    if not img_dir.is_dir() or not mask_dir.is_dir():
        raise DataError(f"{split_dir}: expected sub-folders 'images' and 'masks'")
    masks = {p.stem.removesuffix("_mask"): p for p in mask_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    pairs = []
    for img in sorted(p for p in img_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        if img.stem not in masks:
            raise DataError(f"{img}: no mask for it in {mask_dir} (expected {img.stem}.png or {img.stem}_mask.png)")
        pairs.append((img, masks[img.stem]))
    return pairs


def load_segmentation_folder(root: str | Path, limit: int | None = None) -> ImageDataset:
    """``root/{train,val,test}/images/NAME.png`` with ``root/{train,val,test}/masks/NAME.png`` (or
    ``NAME_mask.png``). Masks hold class ids; a mask of only 0 and 255 is read as 0/1. All files of the
    folder share one size (it is the stored resolution the metrics are computed at)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder '{root}' does not exist{where(root)}; set data.path (--set data.path=PATH)")
    splits = {}
    size = None
    for s in SPLITS:
        pairs = _pairs(root / s)
        pairs = [pairs[i] for i in subset(len(pairs), limit)]
        images, masks = [], []
        for img_file, mask_file in pairs:
            img, mask = _read_image(img_file), _read_mask(mask_file)
            size = size or img.shape[:2]
            for file, shape in ((img_file, img.shape[:2]), (mask_file, mask.shape)):
                if shape != size:
                    raise DataError(f"{file}: size {shape} differs from {size}; expected every image and mask "
                                    "of the folder at one size")
            images.append(img if img.ndim == 3 else img[..., None])
            masks.append(mask)
        if not pairs:
            raise DataError(f"{root / s}: no image/mask pairs")
        channels = {a.shape[-1] for a in images}
        stack = np.stack([a if len(channels) == 1 else np.broadcast_to(a, (*a.shape[:2], 3)) for a in images])
        img_t = _image_tensor(stack, "images", root / s)
        mask_t = _mask_tensor(np.stack(masks), img_t, "masks", root / s)
        splits[s] = Split(img_t, mask_t)
    return _dataset(root.name, splits, root)
