"""TensorBoard event files of a process's runs: each stage's per-epoch lines (the ones ``metrics.jsonl`` gets)
and the learning rate, as scalars ``<stage>/<name>`` by epoch, in the run folder's ``tensorboard/``.

One writer is open at a time (runs follow one another); it is flushed after every epoch, so the files are
complete while a comparison is still running, and closed when the next run starts or the process ends.
"""

from __future__ import annotations

import atexit
import importlib.util
from pathlib import Path
from typing import Any

from tppeft.engine.loop import epoch_steps, warmup_cosine
from tppeft.options import ConfigError
from tppeft.rundir import RunPaths
from tppeft.tracking.config import LogConfig

INSTALL = "pip install 'tppeft[tensorboard]' (or pip install tensorboard)"


def check_available(cfg: LogConfig) -> None:
    """A :class:`ConfigError` before anything runs when ``log.tensorboard`` is set but tensorboard is missing."""
    if cfg.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise ConfigError(f"log.tensorboard needs the tensorboard package, which is not installed: {INSTALL}; "
                          "or set log.tensorboard=false")


def scheduled_lr(lr: float, epochs: int, batch_size: int, warmup_epochs: float, num_items: int, epoch: int) -> float:
    """The learning rate of the last update of ``epoch`` under the loop's warm-up + cosine schedule."""
    steps, _ = epoch_steps(num_items, batch_size)
    warmup = int(round(warmup_epochs * steps))
    return lr * warmup_cosine(epoch * steps - 1, epochs * steps, warmup)


def _scalars(values: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Numbers of a metrics line by name (``val`` metrics as ``val_<metric>``)."""
    out = {}
    for k, v in values.items():
        if isinstance(v, dict):
            out.update(_scalars(v, f"{prefix}{k}_"))
        elif isinstance(v, int | float) and not isinstance(v, bool) and k not in ("epoch",):
            out[f"{prefix}{k}"] = float(v)
    return out


class _Board:
    def __init__(self) -> None:
        self.run_dir: Path | None = None
        self.writer = None

    def write(self, run_dir: Path, stage: str, epoch: int, values: dict[str, float]) -> None:
        if self.run_dir != run_dir:
            from torch.utils.tensorboard import SummaryWriter

            self.close()
            self.writer, self.run_dir = SummaryWriter(str(RunPaths(run_dir).tensorboard)), run_dir
        for name, value in values.items():
            self.writer.add_scalar(f"{stage}/{name}", value, epoch)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.writer, self.run_dir = None, None


_BOARD = _Board()
atexit.register(_BOARD.close)


def track_epoch(cfg: LogConfig, run_dir: Path, line: dict, lr: float) -> None:
    """Log one epoch's metrics line (``stage``, ``epoch``, ``train_loss``, ``val``) and ``lr``, if enabled."""
    if cfg.tensorboard:
        _BOARD.write(Path(run_dir), line["stage"], line["epoch"], {**_scalars(line), "lr": lr})


def close() -> None:
    """Close the open event file (the next epoch logged opens a new one)."""
    _BOARD.close()
