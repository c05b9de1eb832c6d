"""(IA)³ through peft.

Options in ``config.py`` (torch-free), the method in ``model.py``, imported on first use.
"""

from typing import TYPE_CHECKING

from tppeft.lazy import lazy_exports
from tppeft.targets.ia3.config import Ia3Options

if TYPE_CHECKING:
    from tppeft.targets.ia3.model import Ia3Method

__getattr__, __dir__ = lazy_exports(__name__, {"tppeft.targets.ia3.model": ["Ia3Method"]})

__all__ = ["Ia3Method", "Ia3Options"]
