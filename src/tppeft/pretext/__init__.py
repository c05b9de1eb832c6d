"""Pretext tasks of the TPP stage: each owns a temporary head and a loss, and is discarded afterwards.

Laid out as lightly is (losses/ one per file with its paper, heads.py, views/, masking.py), but without
depending on it: lightly 1.6 requires torchvision (pinned to one torch build, so pip may pull another torch),
pytorch_lightning and hydra-core for the few hundred lines of losses and heads used here.

A task with options is a folder: ``config.py`` (torch-free) beside ``task.py``; ``config.py`` of this package
composes them into the ``pretext`` section. The registry below names each task's implementation and options;
an implementation is imported when it is first used, so that reading a configuration needs no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from tppeft.lazy import lazy_exports, load
from tppeft.options import ConfigError, Section
from tppeft.pretext.dino.config import DinoConfig
from tppeft.pretext.featdistill.config import FeatDistillConfig
from tppeft.pretext.mae.config import MaeOptions
from tppeft.pretext.simclr.config import SimclrConfig

if TYPE_CHECKING:
    from tppeft.pretext.base import PretextTask
    from tppeft.pretext.config import PretextConfig
    from tppeft.pretext.dino.task import SelfDistillation
    from tppeft.pretext.featdistill.task import MaskedFeatureDistillation
    from tppeft.pretext.mae.task import MaskedReconstruction
    from tppeft.pretext.simclr.task import Contrastive
    from tppeft.pretext.simmim import SimMIM


class Registered(NamedTuple):
    """A task: its implementation (``"module:Class"``, imported on first use) and its own options, if any
    (besides the stage's keys and, for the masked-image tasks, ``mask_ratio`` and ``norm_pix_loss``)."""

    implementation: str
    options: type[Section] | None = None


PRETEXTS: dict[str, Registered] = {
    "mae": Registered("tppeft.pretext.mae.task:MaskedReconstruction", MaeOptions),
    "simmim": Registered("tppeft.pretext.simmim:SimMIM"),
    "dino": Registered("tppeft.pretext.dino.task:SelfDistillation", DinoConfig),
    "simclr": Registered("tppeft.pretext.simclr.task:Contrastive", SimclrConfig),
    "featdistill": Registered("tppeft.pretext.featdistill.task:MaskedFeatureDistillation", FeatDistillConfig),
}


def get_pretext(cfg: PretextConfig) -> type[PretextTask]:
    """The task class of ``pretext.method``; an unknown name is a :class:`ConfigError`."""
    if cfg.method not in PRETEXTS:
        raise ConfigError(f"pretext.method '{cfg.method}' is unknown; choose from {sorted(PRETEXTS)}")
    return load(PRETEXTS[cfg.method].implementation)


def list_pretexts() -> dict[str, str]:
    return {name: load(PRETEXTS[name].implementation).description for name in sorted(PRETEXTS)}


__getattr__, __dir__ = lazy_exports(__name__, {
    "tppeft.pretext.base": ["PretextTask"],
    "tppeft.pretext.dino.task": ["SelfDistillation"],
    "tppeft.pretext.featdistill.task": ["MaskedFeatureDistillation"],
    "tppeft.pretext.mae.task": ["MaskedReconstruction"],
    "tppeft.pretext.simclr.task": ["Contrastive"],
    "tppeft.pretext.simmim": ["SimMIM"],
})

__all__ = ["PRETEXTS", "Contrastive", "MaskedFeatureDistillation", "MaskedReconstruction", "PretextTask", "Registered",
           "SelfDistillation", "SimMIM", "get_pretext", "list_pretexts"]
