"""Temporary heads of pretext tasks."""

from __future__ import annotations

import torch
from timm.models.vision_transformer import Block
from torch import nn


class MAEDecoder(nn.Module):
    """MAE's light decoder: embed visible latents, insert mask tokens, transformer blocks, predict pixels.

    Parameter names match the bundled b0 decoder (``dec_embed``, ``mask_token``, ``dec_pos``,
    ``dec_blocks``, ``dec_norm``, ``dec_pred``) so that a checkpoint's decoder loads as it is.
    """

    def __init__(self, embed_dim: int, num_patches: int, patch_dim: int, dim: int = 128, depth: int = 2,
                 heads: int = 4):
        super().__init__()
        self.dec_embed = nn.Linear(embed_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.dec_pos = nn.Parameter(torch.zeros(1, num_patches + 1, dim))
        self.dec_blocks = nn.Sequential(*[Block(dim, heads, qkv_bias=False) for _ in range(depth)])
        self.dec_norm = nn.LayerNorm(dim)
        self.dec_pred = nn.Linear(dim, patch_dim)
        nn.init.trunc_normal_(self.dec_pos, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, latent: torch.Tensor, ids_restore: torch.Tensor, num_prefix: int) -> torch.Tensor:
        """``latent``: (B, prefix + keep, D) encoder output. Returns (B, L, patch_dim) for all patches."""
        x = self.dec_embed(latent)
        cls, visible = x[:, :1], x[:, num_prefix:]
        b, length = ids_restore.shape
        fill = self.mask_token.expand(b, length - visible.shape[1], -1)
        x = torch.cat([visible, fill], dim=1)
        x = torch.gather(x, 1, ids_restore.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        x = torch.cat([cls, x], dim=1) + self.dec_pos
        x = self.dec_norm(self.dec_blocks(x))
        return self.dec_pred(x[:, 1:])
