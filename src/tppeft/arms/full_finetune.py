"""``full_finetune``: a reference that trains every weight of its backbone copy (the shared one stays frozen)."""

from __future__ import annotations

from pydantic import Field

from tppeft.arms.base import Arm, register_arm
from tppeft.options import Section


class FullFinetuneConfig(Section):
    lr_scale: float = Field(
        0.1, gt=0,
        description="`full_finetune`: learning-rate factor of the backbone weights (the head uses finetune.lr).",
    )


FULL_FINETUNE = register_arm(Arm(
    name="full_finetune",
    help="reference: every backbone weight trained (at `finetune.lr × full_finetune.lr_scale`, head at "
    "`finetune.lr`); no target parameters",
    trains="every weight of its backbone copy",
    model="whole_backbone",
    carries_targets=False,
    options="full_finetune",
))
