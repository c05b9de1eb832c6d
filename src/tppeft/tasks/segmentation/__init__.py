"""Segmentation: UNETR-style decoder on the ViT, Dice + cross-entropy loss, Dice and IoU metrics.

Options in ``config.py`` (torch-free), the task in ``task.py``, imported on first use.
"""

from typing import TYPE_CHECKING

from tppeft.lazy import lazy_exports
from tppeft.tasks.segmentation.config import SegmentationOptions

if TYPE_CHECKING:
    from tppeft.tasks.segmentation.task import (
        EXAMPLES_FILE,
        FIGURE_FILE,
        SegmentationTask,
        preview_indices,
        segmentation_scores,
        summarize_scores,
    )

__getattr__, __dir__ = lazy_exports(__name__, {
    "tppeft.tasks.segmentation.task": ["EXAMPLES_FILE", "FIGURE_FILE", "SegmentationTask", "preview_indices",
                                       "segmentation_scores", "summarize_scores"],
})

__all__ = ["EXAMPLES_FILE", "FIGURE_FILE", "SegmentationOptions", "SegmentationTask", "preview_indices",
           "segmentation_scores", "summarize_scores"]
