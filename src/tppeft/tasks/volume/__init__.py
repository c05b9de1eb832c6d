"""Volume classification with a 2D backbone and a learned slice aggregation.

Options in ``config.py`` (torch-free), the task in ``task.py``, imported on first use.
"""

from typing import TYPE_CHECKING

from tppeft.lazy import lazy_exports
from tppeft.tasks.volume.config import VolumeOptions

if TYPE_CHECKING:
    from tppeft.tasks.volume.task import AttentionPool, MeanPool, SliceAggregationHead, SliceClassifier, VolumeTask

__getattr__, __dir__ = lazy_exports(__name__, {
    "tppeft.tasks.volume.task": ["AttentionPool", "MeanPool", "SliceAggregationHead", "SliceClassifier",
                                 "VolumeTask"],
})

__all__ = ["AttentionPool", "MeanPool", "SliceAggregationHead", "SliceClassifier", "VolumeOptions", "VolumeTask"]
