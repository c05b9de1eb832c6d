"""``baseline``: ordinary PEFT, the target parameters starting from the method's usual initialisation."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tppeft.arms.base import Arm, register_arm

if TYPE_CHECKING:
    from tppeft.experiment.context import Context
    from tppeft.experiment.model import RunModel


def build_with_targets(ctx: Context, seed: int) -> tuple[RunModel, dict]:
    """A backbone copy with the method's target parameters, initialised from the seed's ``targets`` stream."""
    from tppeft.experiment.model import build_run_model

    return build_run_model(ctx, seed), {}


BASELINE = register_arm(Arm(
    name="baseline",
    help="ordinary PEFT: target parameters start from their usual initialisation (LoRA: A random, B zero; "
    "BitFit: the backbone's own biases)",
    trains="target parameters",
    build=build_with_targets,
))
