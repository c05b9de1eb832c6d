"""Options of volume classification; they sit flat in the ``task`` section (``task.slices``, ...). The volume
reader takes ``slices`` and ``slice_span`` too. Torch-free."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tppeft.options import Section


class VolumeOptions(Section):
    """Which slices of a volume the 2D backbone sees, and how their features become one."""

    slices: int | None = Field(
        8, gt=0, description="Volumes: slices per volume fed to the 2D backbone, evenly spaced along the first "
        "axis; null = every slice in the span.")
    train_slices: int | None = Field(
        None, gt=0, description="Volumes: slices drawn at random (per volume and step, order kept) from the "
        "`slices` for each training step, a cheaper bag that also augments; null = all. Evaluation uses all.")
    slice_span: float = Field(
        1.0, gt=0, le=1, description="Volumes: central fraction of the depth that the slices are taken from.")
    aggregation: Literal["attention", "mean"] = Field(
        "attention", description="Volumes: how slice features become one volume feature: gated attention "
        "pooling (learned weights) or the mean; a linear classifier follows.")
