"""MAE-style masked-image reconstruction (He et al., "Masked Autoencoders Are Scalable Vision Learners",
CVPR 2022, arXiv:2111.06377): the encoder sees only the visible patches, a light decoder predicts the
hidden ones."""

from __future__ import annotations

import torch
from torch import nn

from tppeft.backbones import Backbone
from tppeft.options import ConfigError
from tppeft.pretext.base import PretextTask
from tppeft.pretext.config import PretextConfig
from tppeft.pretext.encoder import encode_visible
from tppeft.pretext.heads import MAEDecoder
from tppeft.pretext.losses import masked_patch_loss
from tppeft.pretext.masking import mask_from_keep, normalised_patches, patch_dim, patch_targets, random_keep_indices

__all__ = ["MaskedReconstruction", "encode_visible"]


class MaskedReconstruction(PretextTask):
    name = "mae"

    def __init__(self, backbone: Backbone, vit: nn.Module, cfg: PretextConfig):
        super().__init__(backbone, vit, cfg)
        self.vit = vit
        num_patches = vit.patch_embed.num_patches
        pixels = patch_dim(vit)
        # auto: the checkpoint's decoder only at the size it was trained at; elsewhere its position table is
        # resampled, which `pretrained` asks for explicitly
        use_pretrained = cfg.decoder == "pretrained" or (
            cfg.decoder == "auto" and bool(backbone.decoder_state) and not backbone.decoder_resampled)
        self.patch_order = "chw"
        if use_pretrained:
            if not backbone.decoder_state:
                raise ConfigError(f"pretext.decoder=pretrained but {backbone.describe_source()} has no MAE decoder "
                                  "(expected decoder_embed, mask_token, decoder_pos_embed, decoder_blocks.*, "
                                  "decoder_norm, decoder_pred, or a ViTMAEForPreTraining folder); use "
                                  "pretext.decoder=fresh")
            meta = backbone.decoder_meta
            self.decoder = MAEDecoder(vit.embed_dim, num_patches, pixels, meta.get("dim", 128),
                                      meta.get("depth", 4), meta.get("heads", 4), mlp_ratio=meta.get("mlp_ratio", 4.0),
                                      qkv_bias=meta.get("qkv_bias", False), norm_eps=meta.get("norm_eps"))
            self.decoder.load_state_dict(backbone.decoder_state)
            self.patch_order = meta.get("patch_order", "chw")  # an imported decoder is scored in the order it predicts
        else:
            self.decoder = MAEDecoder(vit.embed_dim, num_patches, pixels, cfg.decoder_dim, cfg.decoder_depth,
                                      cfg.decoder_heads)
        self.decoder_source = "fresh"
        if use_pretrained:
            self.decoder_source = "resampled pretrained" if backbone.decoder_resampled else "pretrained"
        origin = backbone.decoder_meta.get("origin") if use_pretrained else None
        self.decoder_norm_pix = backbone.decoder_meta.get("norm_pix_loss")  # the target it was trained for
        self.head_source = f"{self.decoder_source} MAE decoder" + (f" ({origin})" if origin else "")
        train_decoder = cfg.train_decoder if cfg.train_decoder is not None else not use_pretrained
        self.decoder.requires_grad_(train_decoder)

    def describe(self) -> str:
        trained = "trained" if any(p.requires_grad for p in self.decoder.parameters()) else "frozen"
        text = f"mae ({self.decoder_source} decoder, {trained}; mask ratio {self.cfg.mask_ratio})"
        own = self.decoder_norm_pix if self.decoder_source != "fresh" else None
        if own is not None and own != self.cfg.norm_pix_loss:
            text += (f"; WARNING: the decoder was trained with norm_pix_loss={own}, scored with "
                     f"pretext.norm_pix_loss={self.cfg.norm_pix_loss}")
        return text

    def head_param_groups(self, lr: float) -> list[dict]:
        params = [p for p in self.decoder.parameters() if p.requires_grad]
        if not params:
            return []
        scale = self.cfg.decoder_lr_scale if self.decoder_source != "fresh" else 1.0
        return [{"params": params, "lr": lr * scale}]

    def loss(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        length = self.vit.patch_embed.num_patches
        keep, ids_restore = random_keep_indices(images.shape[0], length, self.cfg.mask_ratio, generator, images.device)
        return self.masked_loss(images, keep, ids_restore)

    def masked_loss(self, images: torch.Tensor, keep: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """The loss with a given mask: kept patch indices (B, K) and the permutation restoring order (B, L)."""
        latent = encode_visible(self.vit, images, keep)
        pred = self.decoder(latent, ids_restore, self.vit.num_prefix_tokens)
        target = patch_targets(self.vit, images, self.patch_order)
        if self.cfg.norm_pix_loss:
            target = normalised_patches(target)
        return masked_patch_loss(pred, target, mask_from_keep(keep, ids_restore.shape[1]), "mse")
