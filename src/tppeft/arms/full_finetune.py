"""``full_finetune``: a reference that trains every weight of its backbone copy (the shared one stays frozen)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from tppeft.arms.base import Arm, register_arm
from tppeft.options import Section

if TYPE_CHECKING:
    from tppeft.experiment.context import Context
    from tppeft.experiment.model import RunModel


class FullFinetuneConfig(Section):
    lr_scale: float = Field(
        0.1, gt=0,
        description="`full_finetune`: learning-rate factor of the backbone weights (the head uses finetune.lr).",
    )


def build(ctx: Context, seed: int) -> tuple[RunModel, dict]:
    """A backbone copy whose own weights are the trainable set, at ``full_finetune.lr_scale``."""
    from tppeft.backbones import frozen_state_digest
    from tppeft.experiment.model import RunModel

    vit = ctx.backbone.fresh_model().to(ctx.device)
    own = sum(p.numel() for p in vit.parameters())
    names = [n for n, _ in vit.named_parameters()]
    vit.requires_grad_(True)
    return RunModel(vit, None, None, names, frozen_state_digest(vit, set(names)), own, added=False,
                    lr_scale=ctx.cfg.full_finetune.lr_scale), {}


FULL_FINETUNE = register_arm(Arm(
    name="full_finetune",
    help="reference: every backbone weight trained (at `finetune.lr × full_finetune.lr_scale`, head at "
    "`finetune.lr`); no target parameters",
    trains="every weight of its backbone copy",
    build=build,
    carries_targets=False,
    options="full_finetune",
))
