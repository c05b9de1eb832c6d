"""Options of NIfTI volume data (``data.volume.*``): how volumes are read, oriented, normalised and split.
Torch-free: ``tppeft.config`` composes them."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from tppeft.options import Section


class VolumeDataConfig(Section):
    """NIfTI volumes (an MSD folder or a CSV of image/label paths)."""

    orientation: str | None = Field(
        None, description="NIfTI volumes: axis codes every volume is reoriented to (MONAI `Orientation`, e.g. "
        "`RAS`); null = as stored, and then every volume must have the same orientation.")
    spacing: tuple[float, float, float] | None = Field(
        None, description="NIfTI volumes: voxel spacing in mm to resample to (MONAI `Spacing`: images "
        "bilinear, labels nearest); null = as stored.")
    slice_axis: Literal[0, 1, 2] = Field(
        2, description="NIfTI volumes: the axis (after orientation) that becomes depth: slices for a 2D "
        "backbone, the depth of a 3D one.")
    intensity: Literal["percentile", "zscore", "window"] = Field(
        "percentile", description="NIfTI volumes: per-volume intensity normalisation to [0, 1]: `percentile` "
        "clips to `percentiles` and scales (MONAI `ScaleIntensityRangePercentiles`); `zscore` subtracts the mean "
        "and divides by the std of the non-zero voxels (MONAI `NormalizeIntensity`), then maps +-`zscore_clip` "
        "to [0, 1]; `window` maps the fixed range `window` (e.g. CT Hounsfield units) to [0, 1].")
    percentiles: tuple[float, float] = Field(
        (0.5, 99.5), description="NIfTI volumes, `intensity: percentile`: lower and upper percentile.")
    zscore_clip: float = Field(
        3.0, gt=0, description="NIfTI volumes, `intensity: zscore`: standard deviations mapped to 0 and 1.")
    window: tuple[float, float] = Field(
        (-1000.0, 1000.0), description="NIfTI volumes, `intensity: window`: values mapped to 0 and 1 (clipped).")
    split: str = Field(
        "auto", description="NIfTI volumes: `auto` = the data's own split (`split.csv` in the MSD folder, or a "
        "`split` column of the CSV), else a seeded one; `seeded` = always seeded; any other text = a CSV file "
        "`case,split` (relative paths from the working folder).")
    split_seed: int = Field(0, ge=0, description="NIfTI volumes: seed of a seeded split.")
    split_fractions: tuple[float, float, float] = Field(
        (0.7, 0.1, 0.2), description="NIfTI volumes: train/val/test fractions of a seeded split (sorted case "
        "names, `numpy.random.default_rng(split_seed).permutation`, rounded).")

    @field_validator("percentiles")
    @classmethod
    def _check_percentiles(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0 <= v[0] < v[1] <= 100:
            raise ValueError("needs 0 <= lower < upper <= 100")
        return v

    @field_validator("window")
    @classmethod
    def _check_window(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not v[0] < v[1]:
            raise ValueError("needs lower < upper")
        return v

    @field_validator("spacing")
    @classmethod
    def _check_spacing(cls, v: tuple[float, float, float] | None) -> tuple[float, float, float] | None:
        if v is not None and min(v) <= 0:
            raise ValueError("needs three positive spacings in mm")
        return v

    @field_validator("split_fractions")
    @classmethod
    def _check_fractions(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if min(v) <= 0 or abs(sum(v) - 1) > 1e-6:
            raise ValueError("needs three positive fractions summing to 1")
        return v

    @field_validator("orientation")
    @classmethod
    def _check_orientation(cls, v: str | None) -> str | None:
        if v is None:
            return v
        codes = v.upper()
        axes = sorted(next((i for i, pair in enumerate(("LR", "AP", "SI")) if c in pair), -1) for c in codes)
        if axes != [0, 1, 2]:
            raise ValueError("needs one code per axis from L/R, A/P and S/I, e.g. RAS")
        return codes
