"""Options of the data section (``data.*``; backbone pre-training reads its crop and flips) and of one source of
the backbone pre-training pool (``backbone_pretrain.sources[]``). Torch-free: ``tppeft.config`` composes them."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from tppeft.data.nifti.config import VolumeDataConfig
from tppeft.options import Section, check_area_range


class DataConfig(Section):
    path: str = Field(
        "bundled:breastmnist",
        description="MedMNIST-format .npz (2D images or 3D volumes), a segmentation .npz (`images`, `masks`, "
        "`split`), a folder of image/mask pairs, an MSD folder of NIfTI volumes (`imagesTr/`, `labelsTr/`, "
        "`dataset.json`) or a CSV of NIfTI image/label paths, or `bundled:breastmnist`; relative paths from the "
        "working folder.",
    )
    image_size: int | None = Field(
        None, gt=0, description="Input side in pixels; null = the backbone's own input size."
    )
    augment: bool = Field(
        True, description="Random resized crop and flips on training batches (masks and volume slices move with "
        "their image).")
    crop_scale: tuple[float, float] = Field(
        (0.6, 1.0), description="Area range of the random resized crop, as fractions of the image (also "
        "`tppeft backbone-pretrain`)."
    )
    hflip: bool = Field(True, description="Random horizontal flip during training (also `tppeft backbone-pretrain`).")
    vflip: bool = Field(False, description="Random vertical flip during training (also `tppeft backbone-pretrain`).")
    limit: int | None = Field(
        None, gt=0, description="Use only N images of each split, evenly spaced through it (quick checks); null = all."
    )

    label_fraction: float | None = Field(
        None, gt=0, le=1,
        description="Few labels: fine-tuning sees this fraction of the training split (stratified by class for "
        "single-label classification, drawn per seed, the same in every arm of a seed); the TPP stage still sees "
        "every training image. null (or 1) = all labels.",
    )
    labels_per_class: int | None = Field(
        None, gt=0, description="Few labels: fine-tuning sees this many training images per class (single-label "
        "classification; a class with fewer keeps all); instead of `label_fraction`. null = all labels.",
    )
    volume: VolumeDataConfig = Field(default_factory=VolumeDataConfig)

    @field_validator("crop_scale")
    @classmethod
    def _check_scale(cls, v: tuple[float, float]) -> tuple[float, float]:
        return check_area_range(v)

    @model_validator(mode="after")
    def _one_label_budget(self) -> DataConfig:
        if self.label_fraction is not None and self.labels_per_class is not None:
            raise ValueError("set data.label_fraction or data.labels_per_class, not both")
        return self


class PoolSourceConfig(Section):
    path: str = Field(
        description="A MedMNIST-format .npz (2D images or 3D volumes), a .npz with `images` + `split` "
        "(+ `split_names`) arrays, or `bundled:breastmnist`."
    )
    splits: list[Literal["train", "val", "test"]] = Field(
        ["train"], min_length=1, description="Splits of this file whose images are used."
    )
    slices: int = Field(3, gt=0, description="Central slices taken from each volume along its first axis (3D only).")
