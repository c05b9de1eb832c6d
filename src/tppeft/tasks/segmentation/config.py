"""Options of the segmentation task; they sit flat in the ``task`` section (``task.decoder_channels``, ...).
Torch-free."""

from __future__ import annotations

from pydantic import Field, field_validator

from tppeft.options import Section


class SegmentationOptions(Section):
    """The UNETR-style decoder, the Dice + cross-entropy loss and how empty classes score."""

    decoder_channels: int = Field(
        16, gt=0, description="Segmentation: width of the decoder's full-resolution level (UNETR's "
        "`feature_size`); it doubles at each coarser level.")
    feature_blocks: list[int] | None = Field(
        None, description="Segmentation: transformer blocks (0-based, shallow to deep) whose outputs feed the "
        "decoder, one per upsampling level (log2 of the patch size); null = evenly spaced, ending at the last.")
    dice_weight: float = Field(1.0, ge=0, description="Segmentation: weight of the Dice loss (MONAI DiceCELoss).")
    ce_weight: float = Field(1.0, ge=0, description="Segmentation: weight of the cross-entropy loss.")
    ignore_empty: bool = Field(
        True, description="Segmentation metrics: an image whose ground truth lacks a class is left out of that "
        "class's Dice/IoU (MONAI's default); false = it scores 1 if the prediction lacks it too, else 0.")

    @field_validator("feature_blocks")
    @classmethod
    def _check_blocks(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (not v or any(b < 0 for b in v) or sorted(set(v)) != v):
            raise ValueError("needs distinct block indices >= 0 in increasing order")
        return v
