"""Engine: the one training loop both stages share, devices, checkpoints and signals."""

from tppeft.engine.devices import resolve_device, set_deterministic, set_threads
from tppeft.engine.loop import EpochEnd, TrainResult, train

__all__ = ["EpochEnd", "TrainResult", "resolve_device", "set_deterministic", "set_threads", "train"]
