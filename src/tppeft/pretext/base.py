"""The pretext-task contract and registry."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from tppeft.backbones import Backbone
from tppeft.config import ConfigError, PretextConfig


class PretextTask(nn.Module):
    """A self-supervised objective on top of a backbone that carries target parameters.

    ``loss(images, generator)`` takes a normalised batch and returns a scalar; the randomness it needs
    (masks, views) comes from ``generator`` so that a seed fixes it.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""

    def __init__(self, backbone: Backbone, vit: nn.Module, cfg: PretextConfig):
        super().__init__()
        self.cfg = cfg

    def loss(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def head_param_groups(self, lr: float) -> list[dict]:
        """Optimizer groups of the temporary head that trains alongside the target parameters."""
        return []


_REGISTRY: dict[str, type[PretextTask]] = {}


def register_pretext(cls: type[PretextTask]) -> type[PretextTask]:
    _REGISTRY[cls.name] = cls
    return cls


def get_pretext(cfg: PretextConfig) -> type[PretextTask]:
    if cfg.method not in _REGISTRY:
        raise ConfigError(f"pretext.method '{cfg.method}' is unknown; choose from {sorted(_REGISTRY)}")
    return _REGISTRY[cfg.method]


def list_pretexts() -> dict[str, str]:
    return {k: v.description for k, v in sorted(_REGISTRY.items())}
