"""``baseline_matched``: ``baseline`` given extra fine-tuning epochs equal in training compute to the TPP stage
(:mod:`tppeft.experiment.budget`), so that a gain of ``tpp`` cannot be explained by more training."""

from __future__ import annotations

from pydantic import Field

from tppeft.arms.base import Arm, register_arm
from tppeft.options import Section


class BaselineMatchedConfig(Section):
    extra_epochs: int | None = Field(
        None, ge=0,
        description="Extra fine-tuning epochs of `baseline_matched`; null = the TPP stage's training compute "
        "expressed in fine-tuning epochs (FLOPs of one training step of each stage, counted; rounded up).",
    )


BASELINE_MATCHED = register_arm(Arm(
    name="baseline_matched",
    help="ordinary PEFT given extra fine-tuning epochs equal in training compute to the TPP stage, so a gain of "
    "`tpp` cannot be explained by more training",
    trains="target parameters",
    extra_epochs=lambda budget: budget["extra_epochs"],
    epochs_rule="`finetune.epochs` + the TPP stage's training FLOPs in fine-tuning epochs, rounded up "
    "(or `baseline_matched.extra_epochs`)",
))
