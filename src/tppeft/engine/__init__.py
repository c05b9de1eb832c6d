"""Engine: the one training loop both stages share, devices, checkpoints and signals.

Torch-free to import (``tppeft.config`` reads ``engine/config.py``): the names below load on first use.
"""

from typing import TYPE_CHECKING

from tppeft.lazy import lazy_exports

if TYPE_CHECKING:
    from tppeft.engine.devices import arithmetic, resolve_device, set_deterministic, set_threads
    from tppeft.engine.loop import EpochEnd, TrainResult, train

__getattr__, __dir__ = lazy_exports(__name__, {
    "tppeft.engine.devices": ["arithmetic", "resolve_device", "set_deterministic", "set_threads"],
    "tppeft.engine.loop": ["EpochEnd", "TrainResult", "train"],
})

__all__ = ["EpochEnd", "TrainResult", "arithmetic", "resolve_device", "set_deterministic", "set_threads", "train"]
