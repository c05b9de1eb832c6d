"""Options of (IA)³ (``peft.ia3.*``). Torch-free."""

from __future__ import annotations

from pydantic import Field

from tppeft.options import Section
from tppeft.targets.linears import BlockLinear


class Ia3Options(Section):
    """Options of (IA)³ (peft ``IA3Config``)."""

    feedforward: list[BlockLinear] = Field(
        ["fc2"], description="Targeted linears treated as feed-forward: (IA)³ scales their *input* (the MLP "
        "activation), the others' output."
    )
