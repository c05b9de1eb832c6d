"""Options of the backbone section (``backbone.*``). Torch-free: ``tppeft.config`` composes them."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from tppeft.options import Section


class BackboneConfig(Section):
    name: str | None = Field(
        None,
        description="timm model name of a VisionTransformer; null = from the checkpoint (its metadata, or timm's "
        "standard ViT of the width its shapes show), `vit_tiny_patch16_224` without one. A name whose width, depth, "
        "patch or image size disagrees with the checkpoint's shapes is an error.",
    )
    checkpoint: str | None = Field(
        "bundled:b0",
        description="Backbone weights: `bundled:b0`; the tool's .safetensors layout (with `<stem>_meta.json` or "
        "`meta.json` beside it); a local Hugging Face folder of a `vit_mae` (with its decoder), `vit` or `dinov2` "
        "model; a timm folder; an MAE / RETFound `.pth` (with its decoder when present) or a DINO training "
        "checkpoint (with its projection head); `hf-hub:ORG/NAME` or `timm:NAME` (from the local hub cache when "
        "offline). null = timm's pretrained weights of `name` if `pretrained`, else random init.",
    )
    sha256: str | None = Field(
        None, description="The SHA-256 `backbone.checkpoint` must have: the `backbone.sha256` a run's summary.json "
        "records, or its first 12 or more hex digits. Another file (a backbone made again, or replaced) is refused "
        "before any training, naming both digests; null = no check. A check, not a setting: it may change on "
        "`--resume`.",
    )
    pretrained: bool = Field(
        False, description="With `checkpoint: null`: load timm's pretrained weights (needs internet or a local hub "
        "cache)."
    )
    mean: tuple[float, float, float] | None = Field(
        None, description="Input normalisation mean; null = the checkpoint's (metadata, `preprocessor_config.json`, "
        "timm's config), else its family's convention (ImageNet's for MAE, RETFound, DINO, DINOv2; 0.5 otherwise).",
    )
    std: tuple[float, float, float] | None = Field(
        None, description="Input normalisation std; null = as for `mean`."
    )
    heads: int | None = Field(
        None, gt=0,
        description="Attention heads of the encoder where the checkpoint does not say (a `.pth`, a bare state dict); "
        "null = those of the timm name (given, or timm's standard ViT of that width), else width / 64.",
    )
    decoder_heads: int | None = Field(
        None, gt=0,
        description="Attention heads of a checkpoint's MAE decoder where the file does not say (an MAE `.pth`); "
        "null = MAE's 16.",
    )
    global_pool: Literal["token", "avg"] | None = Field(
        None, description="The image feature the classification head and the SimCLR / DINO projection heads read "
        "(timm's `global_pool`): `token`, the class token; `avg`, the mean of the patch tokens after the final norm "
        "(as MAE fine-tunes); null = the checkpoint's own (the class token for every layout but a timm model made "
        "with another). Segmentation and the linear probe read the tokens themselves, so it does not touch them.")
    dims: Literal[2, 3] = Field(
        2, description="2 = the 2D ViT (volumes slice by slice); 3 = a 3D ViT made from it: patch embedding "
        "inflated to `patch_depth` x patch x patch patches (weights spread over depth), position embedding repeated "
        "over the depth grid. Volume data only (NIfTI volumes, MedMNIST-3D).")
    patch_depth: int = Field(
        4, gt=0, description="3D backbone: depth of a patch in slices (b0: 4 x 8 x 8 patches).")
    volume_depth: int = Field(
        32, gt=0, description="3D backbone: depth of its input in slices (a multiple of `patch_depth`); volumes are "
        "resized to it, and in-plane to `data.image_size`.")

    @field_validator("std")
    @classmethod
    def _check_std(cls, v: tuple[float, float, float] | None) -> tuple[float, float, float] | None:
        if v is not None and min(v) <= 0:
            raise ValueError("needs three positive values")
        return v

    @field_validator("sha256")
    @classmethod
    def _check_sha256(cls, v: str | None) -> str | None:
        if v is not None and (not 12 <= len(v) <= 64 or any(c not in "0123456789abcdef" for c in v.lower())):
            raise ValueError("needs 12 to 64 hex digits of a SHA-256 (as summary.json's backbone.sha256 gives it)")
        return v.lower() if v is not None else v

    @model_validator(mode="after")
    def _depth_fits_patches(self) -> BackboneConfig:
        if self.dims == 3 and self.volume_depth % self.patch_depth:
            raise ValueError(f"backbone.volume_depth ({self.volume_depth}) must be a multiple of "
                             f"backbone.patch_depth ({self.patch_depth})")
        if self.sha256 is not None and not self.checkpoint:
            raise ValueError("backbone.sha256 checks a checkpoint file; with backbone.checkpoint null there is none")
        return self
