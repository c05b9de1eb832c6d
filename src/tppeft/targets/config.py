"""The ``peft`` section: the keys its methods share, composed with each family's own options (``lora/config.py``
flat, the others as sub-sections named after the family). Torch-free: ``tppeft.config`` composes it."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from tppeft.options import Section
from tppeft.targets.adapter.config import AdapterOptions, AdaptFormerOptions
from tppeft.targets.ia3.config import Ia3Options
from tppeft.targets.linears import BLOCK_LINEARS, BlockLinear, expand_presets
from tppeft.targets.lora.config import LoraOptions
from tppeft.targets.lycoris.config import LokrOptions
from tppeft.targets.ssf.config import SsfOptions
from tppeft.targets.vpt.config import VptOptions


class SharedOptions(Section):
    """Keys several families read: the method, the low-rank families' rank, alpha and dropout, and the linears
    that methods attach to."""

    method: str = Field("lora", description="Target-parameter method (see `tppeft list`).")
    r: int = Field(8, gt=0, description="Rank of LoRA, LoHa and LoKr.")
    alpha: float = Field(16.0, gt=0, description="Scaling numerator of LoRA, LoHa and LoKr (scale = alpha / r).")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the LoRA input (LoHa/LoKr: rank dropout).")
    targets: list[BlockLinear] = Field(
        list(BLOCK_LINEARS), min_length=1,
        description="Linears of every transformer block that receive target parameters (LoRA family, (IA)³, "
        "SSF); presets: `attention` = [qkv, proj], `mlp` = [fc1, fc2], `all`.",
    )

    @field_validator("targets", mode="before")
    @classmethod
    def _expand_presets(cls, v: Any) -> Any:
        return expand_presets(v)


class PeftConfig(LoraOptions, SharedOptions):
    """The ``peft`` section."""

    lokr: LokrOptions = Field(default_factory=LokrOptions, description="LoKr's options.")
    ia3: Ia3Options = Field(default_factory=Ia3Options, description="(IA)³'s options.")
    adapter: AdapterOptions = Field(default_factory=AdapterOptions, description="Adapter's options.")
    adaptformer: AdaptFormerOptions = Field(default_factory=AdaptFormerOptions, description="AdaptFormer's options.")
    vpt: VptOptions = Field(default_factory=VptOptions, description="Options of `vpt_shallow` and `vpt_deep`.")
    ssf: SsfOptions = Field(default_factory=SsfOptions, description="SSF's options.")
