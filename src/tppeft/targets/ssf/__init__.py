"""SSF: per-channel scale and shift.

Options in ``config.py`` (torch-free), the method in ``model.py``, imported on first use.
"""

from typing import TYPE_CHECKING

from tppeft.lazy import lazy_exports
from tppeft.targets.ssf.config import SsfOptions

if TYPE_CHECKING:
    from tppeft.targets.ssf.model import SSFLayer, SsfMethod

__getattr__, __dir__ = lazy_exports(__name__, {"tppeft.targets.ssf.model": ["SSFLayer", "SsfMethod"]})

__all__ = ["SSFLayer", "SsfMethod", "SsfOptions"]
