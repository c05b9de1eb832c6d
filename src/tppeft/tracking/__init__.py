"""Experiment logging beside the run folder's own files: TensorBoard event files (``log.*``).

Torch-free to import (``tppeft.config`` reads ``tracking/config.py``); the writer loads on first use.
"""

from typing import TYPE_CHECKING

from tppeft.lazy import lazy_exports

if TYPE_CHECKING:
    from tppeft.tracking.tensorboard import check_available, close, scheduled_lr, track_epoch

__getattr__, __dir__ = lazy_exports(__name__, {
    "tppeft.tracking.tensorboard": ["check_available", "close", "scheduled_lr", "track_epoch"],
})

__all__ = ["check_available", "close", "scheduled_lr", "track_epoch"]
