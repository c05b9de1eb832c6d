"""Options of backbone pre-training (``backbone_pretrain.*``): the model, the image pool and the optimisation.
Torch-free: ``tppeft.config`` composes them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from tppeft.data.config import PoolSourceConfig
from tppeft.options import Section, check_area_range


class BackbonePretrainConfig(Section):
    name: str = Field("vit_tiny_patch16_224", description="timm model name of the VisionTransformer to train.")
    arch_kwargs: dict[str, Any] = Field(
        {"img_size": 64, "patch_size": 8},
        description="Keyword arguments of `timm.create_model` (image size, patch size, ...); weights start random.",
    )
    sources: list[PoolSourceConfig] = Field(
        [PoolSourceConfig(path="bundled:breastmnist", splits=["train"])], min_length=1,
        description="Unlabelled image files and, per file, the splits used: "
        "`[{path: ..., splits: [train]}, ...]`. Nothing else is read.",
    )
    data_root: str | None = Field(
        None, description="Folder that relative source paths are read from; null = the working directory."
    )
    checkpoint_name: str = Field(
        "backbone", pattern=r"^[A-Za-z0-9._-]+$",
        description="File stem: writes `<name>_encoder.safetensors`, `<name>_decoder.safetensors`, `<name>_meta.json`.",
    )
    epochs: int = Field(2, gt=0, description="Passes over the image pool.")
    batch_size: int = Field(256, gt=0, description="Images per step.")
    base_lr: float = Field(
        1.5e-4, gt=0, description="MAE's base learning rate; the peak rate is base_lr * batch_size / 256."
    )
    weight_decay: float = Field(0.05, ge=0, description="AdamW weight decay (not on biases, norms, tokens).")
    betas: tuple[float, float] = Field((0.9, 0.95), description="AdamW betas.")
    warmup_fraction: float = Field(0.05, ge=0, lt=1, description="Share of the steps spent in linear warm-up.")
    mask_ratio: float = Field(0.75, gt=0, lt=1, description="Fraction of patches hidden from the encoder.")
    norm_pix_loss: bool = Field(True, description="Reconstruct per-patch normalised pixels.")
    decoder_dim: int = Field(128, gt=0, description="Width of the MAE decoder (4 attention heads).")
    decoder_depth: int = Field(4, gt=0, description="Transformer blocks of the MAE decoder.")
    crop_scale: tuple[float, float] = Field(
        (0.35, 1.0), description="Area range of the random resized crop, as fractions of the image."
    )
    hflip: bool = Field(True, description="Random horizontal flip.")
    bf16: bool = Field(True, description="bfloat16 autocast on CUDA (ignored on CPU).")
    save_dtype: Literal["float16", "float32"] = Field("float16", description="Precision of the saved weights.")
    seed: int = Field(0, ge=0, description="Seed of the initialisation, data order, crops and masks.")

    @field_validator("crop_scale")
    @classmethod
    def _check_scale(cls, v: tuple[float, float]) -> tuple[float, float]:
        return check_area_range(v)

    @field_validator("decoder_dim")
    @classmethod
    def _check_dim(cls, v: int) -> int:
        if v % 4:
            raise ValueError("must be a multiple of 4 (the decoder has 4 attention heads)")
        return v
