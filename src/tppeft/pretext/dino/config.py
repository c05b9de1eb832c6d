"""Options of DINO self-distillation (``pretext.dino.*``); its views are ``pretext.views.*``. Torch-free."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tppeft.options import Section


class DinoConfig(Section):
    """Self-distillation with an EMA teacher of the target parameters (``pretext.method: dino``)."""

    head: Literal["auto", "pretrained", "fresh"] = Field(
        "auto",
        description="`pretrained` = the DINO projection head of a DINO-layout checkpoint (its teacher's, with the "
        "loss centre it saved; its widths replace the three below), `fresh` = a new head, `auto` = pretrained "
        "when the checkpoint has one.",
    )
    out_dim: int = Field(1024, gt=1, description="Prototypes (output width) of a fresh DINO head.")
    hidden_dim: int = Field(512, gt=0, description="Hidden width of a fresh DINO head's MLP.")
    bottleneck_dim: int = Field(128, gt=0, description="Bottleneck width before the prototype layer of a fresh head.")
    student_temp: float = Field(0.1, gt=0, description="Softmax temperature of the student.")
    teacher_temp: float = Field(0.04, gt=0, description="Softmax temperature of the teacher (sharpening).")
    center_momentum: float = Field(
        0.9, ge=0, le=1, description="Momentum of the teacher-output centre (centring); 1 = no centring."
    )
    momentum: float = Field(
        0.99, ge=0, le=1,
        description="EMA momentum m of the teacher (target parameters and head): teacher = m*teacher + (1-m)*student "
        "after every step; 1 = a fixed teacher.",
    )
