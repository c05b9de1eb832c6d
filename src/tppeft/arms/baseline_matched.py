"""``baseline_matched``: ``baseline`` given extra fine-tuning epochs equal in training compute to the TPP stage
(:mod:`tppeft.experiment.budget`), so that a gain of ``tpp`` cannot be explained by more training."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from tppeft.arms.base import Arm, register_arm
from tppeft.options import Section


class BaselineMatchedConfig(Section):
    extra_epochs: int | None = Field(
        None, ge=0,
        description="Extra fine-tuning epochs of `baseline_matched`; null = the TPP stage's training compute "
        "expressed in fine-tuning epochs (FLOPs of one training step of each stage, counted; rounded up).",
    )
    stage_shared_by: int = Field(
        1, ge=1,
        description="Fine-tuning runs that share one TPP stage: `baseline_matched` gets the stage's compute divided "
        "by this (rounded up), the accounting for a stage run once and reused K times (`tppeft pretrain` once, "
        "`tppeft finetune --init` K times). The comparison itself makes one stage per seed unless "
        "`pretext.stage_seed` is set.",
    )


def _check(cfg: Any) -> str | None:  # a tppeft.config.Config, which imports this package
    m = cfg.baseline_matched
    if m.extra_epochs is not None and m.stage_shared_by != 1:
        return ("baseline_matched.extra_epochs sets the extra epochs by hand, so baseline_matched.stage_shared_by "
                "has nothing to divide: set one of them")
    return None


BASELINE_MATCHED = register_arm(Arm(
    name="baseline_matched",
    help="ordinary PEFT given extra fine-tuning epochs equal in training compute to the TPP stage, so a gain of "
    "`tpp` cannot be explained by more training",
    trains="target parameters",
    extra_epochs=lambda budget: budget["extra_epochs"],
    epochs_rule="`finetune.epochs` + the TPP stage's training FLOPs in fine-tuning epochs (divided by "
    "`baseline_matched.stage_shared_by`), rounded up (or `baseline_matched.extra_epochs`)",
    options="baseline_matched",
    check=_check,
))
