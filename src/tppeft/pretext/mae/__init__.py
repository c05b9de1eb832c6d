"""MAE masked-image reconstruction.

Options in ``config.py`` (torch-free), the task in ``task.py``, imported on first use.
"""

from typing import TYPE_CHECKING

from tppeft.lazy import lazy_exports
from tppeft.pretext.mae.config import MaeOptions

if TYPE_CHECKING:
    from tppeft.pretext.mae.task import MaskedReconstruction, encode_visible

__getattr__, __dir__ = lazy_exports(__name__, {"tppeft.pretext.mae.task": ["MaskedReconstruction", "encode_visible"]})

__all__ = ["MaeOptions", "MaskedReconstruction", "encode_visible"]
