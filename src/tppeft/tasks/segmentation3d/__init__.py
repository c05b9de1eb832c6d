"""3D segmentation of NIfTI volumes: with the 2D backbone slice by slice (``task.py``), scored per volume in 3D.

Options in ``config.py`` (torch-free); the rest is imported on first use.
"""

from typing import TYPE_CHECKING

from tppeft.lazy import lazy_exports
from tppeft.tasks.segmentation3d.config import Segmentation3DOptions

if TYPE_CHECKING:
    from tppeft.tasks.segmentation3d.scores import volume_scores
    from tppeft.tasks.segmentation3d.slices import SliceInputs, SliceSplit
    from tppeft.tasks.segmentation3d.task import SliceSegmentationTask, preview_slices

__getattr__, __dir__ = lazy_exports(__name__, {
    "tppeft.tasks.segmentation3d.scores": ["volume_scores"],
    "tppeft.tasks.segmentation3d.slices": ["SliceInputs", "SliceSplit"],
    "tppeft.tasks.segmentation3d.task": ["SliceSegmentationTask", "preview_slices"],
})

__all__ = ["Segmentation3DOptions", "SliceInputs", "SliceSegmentationTask", "SliceSplit", "preview_slices",
           "volume_scores"]
