"""Options of the bottleneck adapters (``peft.adapter.*``, ``peft.adaptformer.*``). Torch-free."""

from __future__ import annotations

from pydantic import Field

from tppeft.options import Section


class AdapterOptions(Section):
    """Options of the sequential bottleneck adapter (Houlsby/Pfeiffer style, after the MLP)."""

    dim: int = Field(16, gt=0, description="Bottleneck width of the adapter (down 192 -> dim -> up 192 on b0).")


class AdaptFormerOptions(Section):
    """Options of AdaptFormer, the parallel adapter beside the MLP."""

    dim: int = Field(16, gt=0, description="Bottleneck width of the parallel adapter.")
    scale: float = Field(0.1, gt=0, description="Fixed factor on the adapter branch (AdaptFormer's s).")
