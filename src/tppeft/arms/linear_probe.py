"""``linear_probe``: a reference that trains the task's head alone on the frozen backbone."""

from __future__ import annotations

from tppeft.arms.base import Arm, register_arm

LINEAR_PROBE = register_arm(Arm(
    name="linear_probe",
    help="reference: the task's head alone on the frozen backbone; no target parameters",
    trains="nothing but the head",
    model="frozen",
    carries_targets=False,
))
