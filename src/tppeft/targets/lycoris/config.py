"""Options of the LyCORIS family (``peft.lokr.*``); LoHa has none beyond the shared rank, alpha and dropout.
Torch-free."""

from __future__ import annotations

from pydantic import Field

from tppeft.options import Section


class LokrOptions(Section):
    """Options of LoKr (peft ``LoKrConfig``) beyond the shared rank and alpha."""

    decompose_both: bool = Field(
        False, description="Also factor the left Kronecker factor into a low-rank product (peft `decompose_both`)."
    )
    decompose_factor: int = Field(
        -1, description="Kronecker factor size; -1 = the factorisation closest to a square (peft `decompose_factor`)."
    )
