"""Backbones: a frozen timm ViT built by name, with weights from a local checkpoint or timm's hub."""

from tppeft.backbones.factory import Backbone, BackboneError, build_backbone, frozen_state_digest, seen_splits

__all__ = ["Backbone", "BackboneError", "build_backbone", "frozen_state_digest", "seen_splits"]
