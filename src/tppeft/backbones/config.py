"""Options of the backbone section (``backbone.*``). Torch-free: ``tppeft.config`` composes them."""

from __future__ import annotations

from pydantic import Field

from tppeft.options import Section


class BackboneConfig(Section):
    name: str = Field("vit_tiny_patch16_224", description="timm model name of a VisionTransformer.")
    checkpoint: str | None = Field(
        "bundled:b0",
        description="Local encoder weights (.safetensors, with `<stem>_meta.json` or `meta.json` beside it), "
        "or `bundled:b0`; null = timm's pretrained weights if `pretrained`, else random init.",
    )
    pretrained: bool = Field(
        False, description="Load timm's pretrained weights (needs internet or a local hub cache)."
    )
    mean: tuple[float, float, float] | None = Field(
        None, description="Input normalisation mean; null = from checkpoint metadata or timm's config."
    )
    std: tuple[float, float, float] | None = Field(
        None, description="Input normalisation std; null = from checkpoint metadata or timm's config."
    )
