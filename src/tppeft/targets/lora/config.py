"""Options of LoRA beyond the keys it shares with LoHa and LoKr (``peft.r``, ``alpha``, ``dropout``,
``targets``); they sit flat in the ``peft`` section. Torch-free."""

from __future__ import annotations

from pydantic import Field

from tppeft.options import Section


class LoraOptions(Section):
    """LoRA's own switches (peft ``LoraConfig``)."""

    use_rslora: bool = Field(False, description="LoRA: rank-stabilised scale alpha / sqrt(r) (rsLoRA).")
    use_dora: bool = Field(False, description="LoRA: weight-decomposed LoRA (DoRA), adds a magnitude vector.")
