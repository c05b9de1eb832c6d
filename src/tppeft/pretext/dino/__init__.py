"""DINO self-distillation with an EMA teacher.

Options in ``config.py`` (torch-free), the task in ``task.py``, imported on first use.
"""

from typing import TYPE_CHECKING

from tppeft.lazy import lazy_exports
from tppeft.pretext.dino.config import DinoConfig

if TYPE_CHECKING:
    from tppeft.pretext.dino.task import SelfDistillation

__getattr__, __dir__ = lazy_exports(__name__, {"tppeft.pretext.dino.task": ["SelfDistillation"]})

__all__ = ["DinoConfig", "SelfDistillation"]
