"""``baseline``: ordinary PEFT, the target parameters starting from the method's usual initialisation."""

from __future__ import annotations

from tppeft.arms.base import Arm, register_arm

BASELINE = register_arm(Arm(
    name="baseline",
    help="ordinary PEFT: target parameters start from their usual initialisation (LoRA: A random, B zero; "
    "BitFit: the backbone's own biases)",
    trains="target parameters",
))
