"""Backbones: a frozen timm ViT with weights from a checkpoint in one of several layouts (``formats/``), or timm's hub.

Torch-free to import (``tppeft.config`` reads ``backbones/config.py``): the names below load on first use.
"""

from typing import TYPE_CHECKING

from tppeft.lazy import lazy_exports

if TYPE_CHECKING:
    from tppeft.backbones.factory import Backbone, build_backbone, frozen_state_digest
    from tppeft.backbones.seen import seen_by_name, seen_splits
    from tppeft.errors import BackboneError

__getattr__, __dir__ = lazy_exports(__name__, {
    "tppeft.errors": ["BackboneError"],
    "tppeft.backbones.factory": ["Backbone", "build_backbone", "frozen_state_digest"],
    "tppeft.backbones.seen": ["seen_by_name", "seen_splits"],
})

__all__ = ["Backbone", "BackboneError", "build_backbone", "frozen_state_digest", "seen_by_name", "seen_splits"]
