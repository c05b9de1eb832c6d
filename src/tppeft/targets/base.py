"""The contract every target-parameter method follows, and the registry that names them."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from tppeft.config import PeftConfig


class TargetParamError(ValueError):
    """Target parameters that cannot be attached, saved or loaded as asked."""


class TargetMethod:
    """One PEFT family. Subclasses set ``name`` and implement the three methods below."""

    name: ClassVar[str]
    description: ClassVar[str] = ""

    def __init__(self, cfg: PeftConfig):
        self.cfg = cfg

    def attach(self, backbone: nn.Module) -> tuple[nn.Module, list[str]]:
        """Put the method in place on ``backbone`` (in place); return a handle to save with and the
        names (relative to ``backbone``) of the target parameters. Everything else is frozen."""
        raise NotImplementedError

    def save(self, handle: nn.Module, directory: Path) -> None:
        raise NotImplementedError

    def load(self, handle: nn.Module, directory: Path) -> None:
        """Load saved target parameters into an attached model; a mismatch is a :class:`TargetParamError`."""
        raise NotImplementedError

    @staticmethod
    def target_state(backbone: nn.Module, names: list[str]) -> dict[str, torch.Tensor]:
        params = dict(backbone.named_parameters())
        return {n: params[n].detach().clone() for n in names}


_REGISTRY: dict[str, type[TargetMethod]] = {}


def register_target(cls: type[TargetMethod]) -> type[TargetMethod]:
    _REGISTRY[cls.name] = cls
    return cls


def get_target_method(cfg: PeftConfig) -> TargetMethod:
    if cfg.method not in _REGISTRY:
        raise TargetParamError(f"peft.method '{cfg.method}' is unknown; choose from {sorted(_REGISTRY)}")
    return _REGISTRY[cfg.method](cfg)


def list_target_methods() -> dict[str, str]:
    return {k: v.description for k, v in sorted(_REGISTRY.items())}
