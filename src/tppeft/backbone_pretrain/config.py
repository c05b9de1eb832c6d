"""Options of backbone pre-training (``backbone_pretrain.*``): the model, the image pool and the optimisation;
the keys it shares with the TPP stage are read from their own sections. Torch-free: ``tppeft.config`` composes
them."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from tppeft.data.config import PoolSourceConfig
from tppeft.options import Section


class BackbonePretrainConfig(Section):
    """The model, the image pool and the optimisation of ``tppeft backbone-pretrain``; the mask and decoder come
    from ``pretext``, the crop and flips from ``data``, the autocast precision from ``train.precision``."""

    moved_keys: ClassVar[dict[str, str]] = {
        "mask_ratio": "pretext.mask_ratio",
        "norm_pix_loss": "pretext.norm_pix_loss",
        "decoder_dim": "pretext.decoder_dim",
        "decoder_depth": "pretext.decoder_depth",
        "crop_scale": "data.crop_scale",
        "hflip": "data.hflip",
        "bf16": "train.precision (`auto` = bf16 on a CUDA GPU that supports it, fp32 on CPU; or `bf16`, `fp32`)",
    }

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
    save_dtype: Literal["float16", "float32"] = Field("float16", description="Precision of the saved weights.")
    seed: int = Field(0, ge=0, description="Seed of the initialisation, data order, crops and masks.")

