"""SimMIM-style masked-image modelling (Xie et al., "SimMIM: A Simple Framework for Masked Image Modeling",
CVPR 2022, arXiv:2111.09886): a learnable mask token replaces the embedding of each masked patch, the whole
sequence goes through the ViT (so target parameters see mask tokens, as they never do in MAE), and a
one-layer linear head predicts the pixels of the masked patches under an L1 loss."""

from __future__ import annotations

import torch
from torch import nn

from tppeft.backbones import Backbone
from tppeft.pretext.base import PretextTask
from tppeft.pretext.config import PretextConfig
from tppeft.pretext.encoder import encode_with_mask_tokens
from tppeft.pretext.heads import PixelHead
from tppeft.pretext.losses import masked_patch_loss
from tppeft.pretext.masking import mask_from_keep, normalised_patches, patch_dim, patch_targets, random_keep_indices


class SimMIM(PretextTask):
    name = "simmim"

    def __init__(self, backbone: Backbone, vit: nn.Module, cfg: PretextConfig):
        super().__init__(backbone, vit, cfg)
        self.vit = vit
        self.mask_token = nn.Parameter(torch.zeros(1, 1, vit.embed_dim))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.head = PixelHead(vit.embed_dim, patch_dim(vit))

    def describe(self) -> str:
        return f"simmim (mask ratio {self.cfg.mask_ratio})"

    def head_param_groups(self, lr: float) -> list[dict]:
        return [{"params": [self.mask_token, *self.head.parameters()], "lr": lr}]

    def loss(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        b = images.shape[0]
        length = self.vit.patch_embed.num_patches
        keep, _ = random_keep_indices(b, length, self.cfg.mask_ratio, generator, images.device)
        masked = mask_from_keep(keep, length)
        tokens = encode_with_mask_tokens(self.vit, images, masked, self.mask_token)
        pred = self.head(tokens[:, self.vit.num_prefix_tokens:])
        target = patch_targets(self.vit, images)
        if self.cfg.norm_pix_loss:
            target = normalised_patches(target)
        return masked_patch_loss(pred, target, masked, "l1")
