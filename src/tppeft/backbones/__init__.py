"""Backbones: a frozen timm ViT built by name, with weights from a local checkpoint or timm's hub.

Torch-free to import (``tppeft.config`` reads ``backbones/config.py``): the names below load on first use.
"""

from typing import TYPE_CHECKING

from tppeft.lazy import lazy_exports

if TYPE_CHECKING:
    from tppeft.backbones.factory import Backbone, BackboneError, build_backbone, frozen_state_digest, seen_splits

__getattr__, __dir__ = lazy_exports(__name__, {
    "tppeft.backbones.factory": ["Backbone", "BackboneError", "build_backbone", "frozen_state_digest", "seen_splits"],
})

__all__ = ["Backbone", "BackboneError", "build_backbone", "frozen_state_digest", "seen_splits"]
