"""Visual prompt tuning (shallow and deep).

Options in ``config.py`` (torch-free), the methods in ``model.py``, imported on first use.
"""

from typing import TYPE_CHECKING

from tppeft.lazy import lazy_exports
from tppeft.targets.vpt.config import VptOptions

if TYPE_CHECKING:
    from tppeft.targets.vpt.model import PromptedBlocks, VptDeepMethod, VptShallowMethod

__getattr__, __dir__ = lazy_exports(__name__, {
    "tppeft.targets.vpt.model": ["PromptedBlocks", "VptDeepMethod", "VptShallowMethod"],
})

__all__ = ["PromptedBlocks", "VptDeepMethod", "VptOptions", "VptShallowMethod"]
