"""The arms of a comparison and their registry: one module per arm, each registering its :class:`Arm`.

An arm says what fine-tuning trains and from where, whether a TPP stage comes first (and with which pretext
task), how many fine-tuning epochs it gets, its options and which model builder makes its model
(:mod:`tppeft.arms.base`; the builders are :mod:`tppeft.experiment.builders`). Every module of this package
registers its arms on import, in the order of the modules' names: adding an arm is adding a module (and a builder
only for a new kind of starting model). Torch-free, and below the configuration, which validates against it.
"""

from __future__ import annotations

import importlib
import pkgutil

from tppeft.arms.base import Arm, arms_markdown, find_arm, get_arm, list_arms, register_arm, registered_arms

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if _module != "base":
        importlib.import_module(f"{__name__}.{_module}")

__all__ = ["Arm", "arms_markdown", "find_arm", "get_arm", "list_arms", "register_arm", "registered_arms"]
