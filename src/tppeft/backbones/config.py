"""Options of the backbone section (``backbone.*``). Torch-free: ``tppeft.config`` composes them."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

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
    dims: Literal[2, 3] = Field(
        2, description="2 = the 2D ViT (volumes slice by slice); 3 = a 3D ViT made from it: patch embedding "
        "inflated to `patch_depth` x patch x patch patches (weights spread over depth), position embedding repeated "
        "over the depth grid. Volume data only (NIfTI volumes, MedMNIST-3D).")
    patch_depth: int = Field(
        4, gt=0, description="3D backbone: depth of a patch in slices (b0: 4 x 8 x 8 patches).")
    volume_depth: int = Field(
        32, gt=0, description="3D backbone: depth of its input in slices (a multiple of `patch_depth`); volumes are "
        "resized to it, and in-plane to `data.image_size`.")

    @model_validator(mode="after")
    def _depth_fits_patches(self) -> BackboneConfig:
        if self.dims == 3 and self.volume_depth % self.patch_depth:
            raise ValueError(f"backbone.volume_depth ({self.volume_depth}) must be a multiple of "
                             f"backbone.patch_depth ({self.patch_depth})")
        return self
