"""Options of visual prompt tuning (``peft.vpt.*``). Torch-free."""

from __future__ import annotations

from pydantic import Field

from tppeft.options import Section


class VptOptions(Section):
    """Options of visual prompt tuning (`vpt_shallow`, `vpt_deep`)."""

    tokens: int = Field(10, gt=0, description="Learnable prompt tokens inserted after the class token.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the prompt tokens during training.")
