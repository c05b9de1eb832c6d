"""The LyCORIS low-rank family through peft: LoHa and LoKr.

Options in ``config.py`` (torch-free), the methods in ``model.py``, imported on first use.
"""

from typing import TYPE_CHECKING

from tppeft.lazy import lazy_exports
from tppeft.targets.lycoris.config import LokrOptions

if TYPE_CHECKING:
    from tppeft.targets.lycoris.model import LohaMethod, LokrMethod

__getattr__, __dir__ = lazy_exports(__name__, {"tppeft.targets.lycoris.model": ["LohaMethod", "LokrMethod"]})

__all__ = ["LohaMethod", "LokrMethod", "LokrOptions"]
