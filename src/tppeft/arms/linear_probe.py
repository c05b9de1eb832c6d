"""``linear_probe``: a reference that trains the task's head alone on the frozen backbone."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tppeft.arms.base import Arm, register_arm

if TYPE_CHECKING:
    from tppeft.experiment.context import Context
    from tppeft.experiment.model import RunModel


def build(ctx: Context, seed: int) -> tuple[RunModel, dict]:
    """A plain backbone copy: no target parameters, nothing of the backbone trainable."""
    from tppeft.backbones import frozen_state_digest
    from tppeft.experiment.model import RunModel

    vit = ctx.backbone.fresh_model().to(ctx.device)
    own = sum(p.numel() for p in vit.parameters())
    return RunModel(vit, None, None, [], frozen_state_digest(vit), own), {}


LINEAR_PROBE = register_arm(Arm(
    name="linear_probe",
    help="reference: the task's head alone on the frozen backbone; no target parameters",
    trains="nothing but the head",
    build=build,
    carries_targets=False,
))
