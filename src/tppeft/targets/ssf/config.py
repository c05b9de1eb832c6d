"""Options of SSF (``peft.ssf.*``). Torch-free."""

from __future__ import annotations

from pydantic import Field

from tppeft.options import Section


class SsfOptions(Section):
    """Options of SSF (per-channel scale and shift)."""

    norms: bool = Field(
        True, description="Also scale and shift after every LayerNorm (besides the linears in `peft.targets`)."
    )
