"""Reading one labelled volume with MONAI's NIfTI reader (nibabel underneath): shape and affine checks, label
values, orientation, spacing and per-volume intensity normalisation (MONAI transforms)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from tppeft.data.medmnist import DataError
from tppeft.data.nifti.config import VolumeDataConfig
from tppeft.data.nifti.sources import VolumeCase

AFFINE_TOLERANCE = 1e-3  # mm: image and label affines may differ by rounding, no more


@dataclass
class Volume:
    """One volume as the tasks use it: depth (``slice_axis``) first, intensities in [0, 1]."""

    name: str
    image: np.ndarray  # (D, H, W) float32 in [0, 1]
    label: np.ndarray  # (D, H, W) uint8 class ids
    spacing: tuple[float, float, float]  # mm, in the same (D, H, W) order
    orientation: str  # axis codes of the stored (or reoriented) volume, e.g. "RAS"


@cache
def _loader():
    from monai.transforms import LoadImage  # imported here: monai's transforms are slow to import

    return LoadImage(reader="NibabelReader", image_only=True, dtype=None)


def _load(path: Path):
    """A NIfTI file as a MONAI MetaTensor (affine attached); a file that is not one volume is a DataError."""
    try:
        data = _loader()(str(path))
    except Exception as e:  # nibabel and MONAI raise many types for unreadable files
        raise DataError(f"{path}: cannot read as NIfTI ({type(e).__name__}: {str(e)[:200]})") from None
    if data.ndim == 4:
        raise DataError(f"{path}: a 4D file of shape {tuple(data.shape)} (several channels or time points); "
                        "expected one 3D volume per file")
    if data.ndim != 3:
        raise DataError(f"{path}: a {data.ndim}D image of shape {tuple(data.shape)}; expected a 3D volume")
    return data


def _label_ids(label: np.ndarray, path: Path, allowed: set[int] | None) -> np.ndarray:
    values = np.unique(label)
    if not np.isfinite(values).all() or (values != np.round(values)).any() or values.min() < 0 or values.max() > 255:
        raise DataError(f"{path}: label values must be integer class ids 0..255 (found {values[:8].tolist()})")
    if allowed is not None:
        unknown = sorted(set(values.astype(int).tolist()) - allowed)
        if unknown:
            raise DataError(f"{path}: label value(s) {unknown} not in dataset.json's labels {sorted(allowed)}")
    return label.astype(np.uint8)


def _normaliser(cfg: VolumeDataConfig):
    """The MONAI transform that maps one (1, X, Y, Z) volume's intensities to [0, 1]."""
    return _intensity_transform(cfg.intensity, cfg.percentiles, cfg.zscore_clip, cfg.window)


@cache
def _intensity_transform(intensity: str, percentiles: tuple[float, float], zscore_clip: float,
                         window: tuple[float, float]):
    from monai.transforms import (
        Compose,
        NormalizeIntensity,
        ScaleIntensityRange,
        ScaleIntensityRangePercentiles,
    )

    if intensity == "percentile":
        return ScaleIntensityRangePercentiles(*percentiles, b_min=0.0, b_max=1.0, clip=True)
    if intensity == "zscore":
        return Compose([NormalizeIntensity(), ScaleIntensityRange(-zscore_clip, zscore_clip, 0.0, 1.0, clip=True)])
    return ScaleIntensityRange(*window, 0.0, 1.0, clip=True)


def _axcodes(affine: np.ndarray) -> str:
    import nibabel as nib

    return "".join(nib.aff2axcodes(affine))


def read_volume(case: VolumeCase, cfg: VolumeDataConfig, allowed: set[int] | None = None) -> Volume:
    """Image and label of ``case``: both one 3D volume of the same shape and affine, labels among ``allowed``
    (dataset.json's), reoriented / resampled as ``cfg`` asks, intensities normalised per volume."""
    image, label = _load(case.image), _load(case.label)
    if image.shape != label.shape:
        raise DataError(f"{case.label}: shape {tuple(label.shape)} differs from its image's {tuple(image.shape)} "
                        f"({case.image})")
    gap = float(np.abs(np.asarray(image.affine) - np.asarray(label.affine)).max())
    if gap > AFFINE_TOLERANCE:
        raise DataError(f"{case.label}: affine differs from its image's ({case.image}) by up to {gap:.4g}; "
                        "image and label must share voxel grid, spacing and orientation")
    if not np.isfinite(np.asarray(image)).all():
        raise DataError(f"{case.image}: holds NaN or infinite values")
    _label_ids(np.asarray(label), case.label, allowed)
    image, label = image[None].float(), label[None].float()  # channel first, as MONAI's transforms expect
    label.affine = image.affine  # within tolerance: one grid for both
    if cfg.orientation is not None:
        from monai.transforms import Orientation

        orient = Orientation(axcodes=cfg.orientation, labels=(("L", "R"), ("P", "A"), ("I", "S")))
        image, label = orient(image), orient(label)
    if cfg.spacing is not None:
        from monai.transforms import Spacing

        image = Spacing(pixdim=cfg.spacing, mode="bilinear")(image)
        label = Spacing(pixdim=cfg.spacing, mode="nearest")(label)
    affine = np.asarray(image.affine, dtype=np.float64)
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(0))
    image = np.asarray(_normaliser(cfg)(image))[0].astype(np.float32)
    label = np.asarray(label)[0].round().astype(np.uint8)
    axis = cfg.slice_axis
    order = [axis] + [a for a in range(3) if a != axis]
    return Volume(case.name, np.ascontiguousarray(image.transpose(order)),
                  np.ascontiguousarray(label.transpose(order)), tuple(float(spacing[a]) for a in order),
                  _axcodes(affine))
