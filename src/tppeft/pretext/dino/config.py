"""Options of DINO self-distillation (``pretext.dino.*``); its views are ``pretext.views.*``. Torch-free."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

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
    use_bn: bool = Field(
        False,
        description="Batch norm after the hidden layers of a fresh head (DINO's `use_bn_in_head`), with the batch's "
        "own statistics. It standardises the pooled features across the batch: where a backbone's features "
        "differ little between images (b0's class token on brain MRI: mean pairwise cosine 0.97), the centred "
        "teacher of a head without it is nearly uniform from the first step and the stage collapses.",
    )
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
    warmup_teacher_temp: float | None = Field(
        None, gt=0,
        description="Teacher temperature at the TPP stage's start, rising linearly to `teacher_temp` over "
        "`teacher_temp_warmup_epochs` (DINO's recipe: 0.04 to 0.07 over the first tenth); null = `teacher_temp` "
        "throughout. The head warm-up uses this starting value.",
    )
    teacher_temp_warmup_epochs: float = Field(
        0.0, ge=0, description="Epochs of the TPP stage over which the teacher temperature rises from "
        "`warmup_teacher_temp` to `teacher_temp`.",
    )
    momentum_end: float | None = Field(
        None, ge=0, le=1,
        description="EMA momentum at the TPP stage's end, reached along a cosine from `momentum` (DINO's recipe: "
        "0.996 to 1); null = `momentum` throughout.",
    )
    freeze_last_layer_epochs: float = Field(
        0.0, ge=0, description="Epochs at the TPP stage's start in which the head's prototype layer takes no "
        "update (DINO's recipe: 1), so that the prototypes do not chase a head that is still moving fast.",
    )

    @model_validator(mode="after")
    def _warmup_is_whole(self) -> DinoConfig:
        if (self.warmup_teacher_temp is None) != (self.teacher_temp_warmup_epochs == 0):
            raise ValueError("pretext.dino.warmup_teacher_temp and pretext.dino.teacher_temp_warmup_epochs go "
                             "together: set both (a starting temperature and the epochs to reach teacher_temp) "
                             "or neither")
        return self

    @property
    def start_teacher_temp(self) -> float:
        """The teacher temperature at the TPP stage's first step, and through the head warm-up before it."""
        return self.teacher_temp if self.warmup_teacher_temp is None else self.warmup_teacher_temp

    @property
    def scheduled(self) -> bool:
        """Whether any setting changes over the TPP stage (the task then counts the stage's steps)."""
        return (self.warmup_teacher_temp is not None or self.momentum_end is not None
                or self.freeze_last_layer_epochs > 0)
