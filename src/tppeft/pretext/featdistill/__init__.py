"""Masked feature distillation.

Options in ``config.py`` (torch-free), the task in ``task.py``, imported on first use.
"""

from typing import TYPE_CHECKING

from tppeft.lazy import lazy_exports
from tppeft.pretext.featdistill.config import FeatDistillConfig

if TYPE_CHECKING:
    from tppeft.pretext.featdistill.task import MaskedFeatureDistillation

__getattr__, __dir__ = lazy_exports(__name__, {"tppeft.pretext.featdistill.task": ["MaskedFeatureDistillation"]})

__all__ = ["FeatDistillConfig", "MaskedFeatureDistillation"]
