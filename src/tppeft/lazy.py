"""Package facades that import their implementation modules on first use.

A package whose option models ``tppeft.config`` reads (``tppeft.targets``, ``tppeft.pretext``, ...) must be
importable without torch; its ``__init__`` still offers the names it always did (``from tppeft.data import
augment_batch``) by resolving them here, when they are first asked for. A registry names implementations the
same way, as ``"module:attribute"`` strings, and imports one only when it is used.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def load(path: str) -> Any:
    """The object that ``"package.module:attribute"`` names, importing its module."""
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)


def lazy_exports(package: str, modules: dict[str, list[str]]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``: each name of ``modules`` (module -> names) is imported
    from its module the first time it is read, then kept in the package's namespace."""
    owner = {name: module for module, names in modules.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name not in owner:
            raise AttributeError(f"module '{package}' has no attribute '{name}'")
        value = getattr(importlib.import_module(owner[name]), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(owner))

    return __getattr__, __dir__
