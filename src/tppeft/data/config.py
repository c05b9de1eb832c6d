"""Options of the data section (``data.*``; backbone pre-training reads its crop and flips) and of one source of
the backbone pre-training pool (``backbone_pretrain.sources[]``). Torch-free: ``tppeft.config`` composes them."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from tppeft.options import Section, check_area_range


class DataConfig(Section):
    path: str = Field(
        "bundled:breastmnist",
        description="MedMNIST-format .npz (2D images or 3D volumes), a segmentation .npz (`images`, `masks`, "
        "`split`), a folder of image/mask pairs, or `bundled:breastmnist`; relative paths from the working folder.",
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

    @field_validator("crop_scale")
    @classmethod
    def _check_scale(cls, v: tuple[float, float]) -> tuple[float, float]:
        return check_area_range(v)


class PoolSourceConfig(Section):
    path: str = Field(
        description="A MedMNIST-format .npz (2D images or 3D volumes), a .npz with `images` + `split` "
        "(+ `split_names`) arrays, or `bundled:breastmnist`."
    )
    splits: list[Literal["train", "val", "test"]] = Field(
        ["train"], min_length=1, description="Splits of this file whose images are used."
    )
    slices: int = Field(3, gt=0, description="Central slices taken from each volume along its first axis (3D only).")
