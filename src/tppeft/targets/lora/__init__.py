"""LoRA through peft (rsLoRA, DoRA).

Options in ``config.py`` (torch-free), the method in ``model.py``, imported on first use.
"""

from typing import TYPE_CHECKING

from tppeft.lazy import lazy_exports
from tppeft.targets.lora.config import LoraOptions

if TYPE_CHECKING:
    from tppeft.targets.lora.model import LoraMethod, target_modules_regex

__getattr__, __dir__ = lazy_exports(__name__, {"tppeft.targets.lora.model": ["LoraMethod", "target_modules_regex"]})

__all__ = ["LoraMethod", "LoraOptions", "target_modules_regex"]
