"""Options of experiment logging (``log.*``). Torch-free: ``tppeft.config`` composes them."""

from __future__ import annotations

from pydantic import Field

from tppeft.options import Section


class LogConfig(Section):
    tensorboard: bool = Field(
        False, description="Also write each run's per-epoch training loss, validation metrics and learning rate of "
        "both stages as TensorBoard event files in `runs/<arm>/seed<k>/tensorboard/` (`tensorboard --logdir "
        "DIR/runs`); needs the tensorboard package (`pip install 'tppeft[tensorboard]'`).")
