"""The arms of a comparison and their registry: one module per arm, each registering its :class:`Arm`.

An arm says what fine-tuning trains and from where, whether a TPP stage comes first (and with which pretext
task), how many fine-tuning epochs it gets and how its model is built (:mod:`tppeft.arms.base`). Every module of
this package registers its arms on import, in the order of the modules' names: adding an arm is adding a module.
Torch-free: builders import what they need when they are called.
"""

from __future__ import annotations

import importlib
import pkgutil

from tppeft.arms.base import Arm, arms_markdown, find_arm, get_arm, list_arms, register_arm, registered_arms

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if _module != "base":
        importlib.import_module(f"{__name__}.{_module}")

__all__ = ["Arm", "arms_markdown", "find_arm", "get_arm", "list_arms", "register_arm", "registered_arms"]
