"""The ``task`` section: which task, composed with the tasks' own options, flat (``segmentation/config.py``,
``volume/config.py``; classification has none). Torch-free: ``tppeft.config`` composes it."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tppeft.options import Section
from tppeft.tasks.segmentation.config import SegmentationOptions
from tppeft.tasks.segmentation3d.config import Segmentation3DOptions
from tppeft.tasks.volume.config import VolumeOptions


class TaskChoice(Section):
    """Which task the fine-tuning stage runs."""

    type: Literal["auto", "classification", "segmentation", "volume", "segmentation3d"] = Field(
        "auto",
        description="Task of the fine-tuning stage; `auto` = from the data (masks: segmentation, (N,D,H,W) "
        "volumes: volume classification, NIfTI volumes with label maps: segmentation3d, else classification).",
    )


class TaskConfig(Segmentation3DOptions, VolumeOptions, SegmentationOptions, TaskChoice):
    """The ``task`` section."""
