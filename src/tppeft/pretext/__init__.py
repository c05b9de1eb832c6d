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

from tppeft.errors import did_you_mean
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
    description: str
    options: type[Section] | None = None


PRETEXTS: dict[str, Registered] = {
    "mae": Registered(
        "tppeft.pretext.mae.task:MaskedReconstruction",
        "MAE masked-image reconstruction: encoder on visible patches, decoder predicts the rest", MaeOptions),
    "simmim": Registered(
        "tppeft.pretext.simmim:SimMIM",
        "SimMIM: mask tokens inside the encoder, linear pixel head, L1 on masked patches"),
    "dino": Registered(
        "tppeft.pretext.dino.task:SelfDistillation",
        "DINO self-distillation: EMA teacher of the target parameters, multi-crop, centring, sharpening", DinoConfig),
    "simclr": Registered(
        "tppeft.pretext.simclr.task:Contrastive",
        "SimCLR contrastive learning: two augmented views, projection head, NT-Xent", SimclrConfig),
    "featdistill": Registered(
        "tppeft.pretext.featdistill.task:MaskedFeatureDistillation",
        "feature distillation: predict the frozen backbone's full-image features from a masked view",
        FeatDistillConfig),
}


def check_pretext(cfg: PretextConfig) -> None:
    """An unknown ``pretext.method`` is a :class:`ConfigError` (nothing is imported)."""
    if cfg.method not in PRETEXTS:
        raise ConfigError(f"pretext.method '{cfg.method}' is unknown{did_you_mean(cfg.method, PRETEXTS)}; choose "
                          f"from {sorted(PRETEXTS)}")


def get_pretext(cfg: PretextConfig) -> type[PretextTask]:
    """The task class of ``pretext.method``; an unknown name is a :class:`ConfigError`."""
    check_pretext(cfg)
    return load(PRETEXTS[cfg.method].implementation)


def list_pretexts() -> dict[str, str]:
    """Each pretext task's one-line description, by name (no implementation is imported)."""
    return {name: PRETEXTS[name].description for name in sorted(PRETEXTS)}


__getattr__, __dir__ = lazy_exports(__name__, {
    "tppeft.pretext.base": ["PretextTask"],
    "tppeft.pretext.dino.task": ["SelfDistillation"],
    "tppeft.pretext.featdistill.task": ["MaskedFeatureDistillation"],
    "tppeft.pretext.mae.task": ["MaskedReconstruction"],
    "tppeft.pretext.simclr.task": ["Contrastive"],
    "tppeft.pretext.simmim": ["SimMIM"],
})

__all__ = ["PRETEXTS", "Contrastive", "MaskedFeatureDistillation", "MaskedReconstruction", "PretextTask", "Registered",
           "SelfDistillation", "SimMIM", "check_pretext", "get_pretext",
           "list_pretexts"]
