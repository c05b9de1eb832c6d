"""SimCLR contrastive learning.

Options in ``config.py`` (torch-free), the task in ``task.py``, imported on first use.
"""

from typing import TYPE_CHECKING

from tppeft.lazy import lazy_exports
from tppeft.pretext.simclr.config import SimclrConfig

if TYPE_CHECKING:
    from tppeft.pretext.simclr.task import Contrastive

__getattr__, __dir__ = lazy_exports(__name__, {"tppeft.pretext.simclr.task": ["Contrastive"]})

__all__ = ["Contrastive", "SimclrConfig"]
