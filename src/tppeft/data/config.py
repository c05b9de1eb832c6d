"""Options of the data section (``data.*``; backbone pre-training reads its crop and flips) and of one source of
the backbone pre-training pool (``backbone_pretrain.sources[]``). Torch-free: ``tppeft.config`` composes them."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from tppeft.data.nifti.config import VolumeDataConfig
from tppeft.options import Section, check_area_range


class SplitConfig(Section):
    """How a split is made for data that has none (a folder without split folders, a CSV without a split column)."""

    val: float = Field(0.1, gt=0, lt=0.5, description="Fraction of the images put in the validation split.")
    test: float = Field(0.2, gt=0, lt=0.5, description="Fraction of the images put in the test split.")
    group_by: str | None = Field(
        None, description="CSV column whose value (patient, exam, ...) keeps all its images in one split; null = "
        "the `group` column when the manifest has one. Also checked in a split the manifest gives.")
    seed: int = Field(0, ge=0, description="Seed of the split (fixed across the comparison's seeds).")


class DataConfig(Section):
    path: str = Field(
        "bundled:breastmnist",
        description="MedMNIST-format .npz (2D images or 3D volumes), a segmentation .npz (`images`, `masks`, "
        "`split`), a folder of image/mask pairs, an image folder (`DIR/{train,val,test}/<class>/*` or "
        "`DIR/<class>/*`), a CSV manifest (`path,label[,split][,group]`), an MSD folder of NIfTI volumes "
        "(`imagesTr/`, `labelsTr/`, `dataset.json`) or a CSV of NIfTI image/label paths, or `bundled:breastmnist`; "
        "relative paths from the working folder.",
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
    split: SplitConfig = Field(default_factory=SplitConfig)
    cache: Literal["auto", True, False] = Field(
        "auto", description="Image folders and CSV manifests: decode the images once into a uint8 array file in "
        "`data.cache_dir`, read memory-mapped afterwards; `auto` = only when the decoded images would not fit in "
        "half the free memory.")
    cache_dir: str | None = Field(
        None, description="Folder of `data.cache` files; null = `$XDG_CACHE_HOME/tppeft` (else `~/.cache/tppeft`).")

    label_fraction: float | None = Field(
        None, gt=0, le=1,
        description="Few labels: fine-tuning sees this fraction of the training split (stratified by class for "
        "single-label classification, whole volumes for 3D segmentation slice by slice, drawn per seed, the same in "
        "every arm of a seed); the TPP stage still sees every training image. null (or 1) = all labels.",
    )
    labels_per_class: int | None = Field(
        None, gt=0, description="Few labels: fine-tuning sees this many training images per class (single-label "
        "classification; a class with fewer keeps all); instead of `label_fraction`. null = all labels.",
    )
    merge_classes: dict[str, list[str | int]] | None = Field(
        None, description="Single-label classification: merge classes into one, `{NEW_NAME: [CLASS, ...]}` "
        "(classes by name, or by id where the data names none; a class in at most one group), e.g. "
        "`{tumour: [glioma, meningioma, pituitary]}`; the classes not named keep their own. Classes are numbered "
        "in the order of their first member, every split is relabelled and the few-label draw counts the merged "
        "classes; a TPP stage reads no labels, so `pretext.stage_from` serves any merge. null = the data's classes.")
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

    @field_validator("merge_classes")
    @classmethod
    def _check_groups(cls, v: dict[str, list[str | int]] | None) -> dict[str, list[str | int]] | None:
        members = [str(m) for group in (v or {}).values() for m in group]
        if any(not group for group in (v or {}).values()):
            raise ValueError("every group names at least one class")
        if twice := sorted({m for m in members if members.count(m) > 1}):
            raise ValueError(f"{', '.join(twice)} in more than one group")
        return v


class PoolSourceConfig(Section):
    path: str = Field(
        description="A MedMNIST-format .npz (2D images or 3D volumes), a .npz with `images` + `split` "
        "(+ `split_names`) arrays, `bundled:breastmnist`, or a folder of image files at any depth (labels "
        "ignored; its train/val/test folders are its splits, and without them every image is a training image)."
    )
    splits: list[Literal["train", "val", "test"]] = Field(
        ["train"], min_length=1, description="Splits of this file whose images are used."
    )
    slices: int = Field(3, gt=0, description="Central slices taken from each volume along its first axis (3D only).")
    limit: int | None = Field(
        None, gt=0, description="Use only N images (volumes, for a 3D file) of each chosen split of this file, "
        "evenly spaced through it, e.g. to vary how many unlabelled images a TPP stage sees; null = all."
    )
