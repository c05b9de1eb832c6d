"""``eva``: LoRA initialised by peft's EVA (each ``A`` = top right-singular vectors of the layer's input
activations on the training images, ``B`` = 0); LoRA only."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from tppeft.arms.base import Arm, register_arm
from tppeft.options import Section


class EvaArmConfig(Section):
    rho: float = Field(
        2.0, ge=1.0, description="`eva`: peft `EvaConfig.rho`; a layer may receive up to r*rho ranks (1 = keep r)."
    )
    tau: float = Field(
        0.99, gt=0, le=1,
        description="`eva`: peft `EvaConfig.tau`; cosine similarity of successive SVD steps at which a layer "
        "counts as converged.",
    )
    whiten: bool = Field(False, description="`eva`: peft `EvaConfig.whiten`; whiten the singular vectors.")
    batch_size: int = Field(
        32, gt=0, description="`eva`: training images per SVD batch (not augmented, in the seed's order)."
    )
    max_batches: int = Field(
        200, gt=0, description="`eva`: stop with an error when the SVD has not converged after this many batches."
    )


def needs_lora(cfg: Any) -> str | None:
    """What is wrong with ``cfg`` (a :class:`tppeft.config.Config`) for ``eva``, or None."""
    if cfg.peft.method != "lora":
        return f"arm 'eva' initialises LoRA and needs peft.method=lora (got '{cfg.peft.method}')"
    return None


EVA = register_arm(Arm(
    name="eva",
    help="LoRA initialised by peft's EVA: each `A` = top right-singular vectors of the layer's input activations "
    "on the training images, `B` = 0 (LoRA only)",
    trains="target parameters (LoRA)",
    model="eva",
    options="eva",
    check=needs_lora,
))
