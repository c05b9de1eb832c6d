"""Token paths through a timm ``VisionTransformer`` that pretext tasks need beyond ``forward_features``:
visible patches only (MAE, feature distillation), mask tokens in place of patches (SimMIM), and inputs of
another size (DINO's local crops). Every path ends, like timm's, with the blocks and the final norm, so
target parameters inside the blocks act in all of them.
"""

from __future__ import annotations

import torch
from timm.layers import resample_abs_pos_embed
from torch import nn


def embed_patches(vit: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Patch embeddings (B, L, D) of images of any side that is a multiple of the patch size."""
    pe = vit.patch_embed
    if tuple(images.shape[-2:]) == tuple(pe.img_size) or len(pe.img_size) == 3:  # 3D: volumes of its own size
        return pe(images)
    # timm's PatchEmbed asserts its own input size; the same projection and norm work at any size.
    return pe.norm(pe.proj(images).flatten(2).transpose(1, 2))


def patch_pos_embed(vit: nn.Module, grid: tuple[int, int]) -> torch.Tensor:
    """Position embedding (1, L, D) of the patch tokens on ``grid``, resampled by timm when it differs."""
    prefix = 0 if vit.no_embed_class else vit.num_prefix_tokens
    pos = vit.pos_embed
    if tuple(grid) != tuple(vit.patch_embed.grid_size):
        pos = resample_abs_pos_embed(pos, new_size=list(grid), old_size=list(vit.patch_embed.grid_size),
                                     num_prefix_tokens=prefix)
    return pos[:, prefix:]


def prefix_tokens(vit: nn.Module, batch: int) -> torch.Tensor:
    """Class (and register) tokens (B, P, D), with their position embedding where the ViT has one."""
    tokens = [vit.cls_token.expand(batch, -1, -1)]
    if vit.reg_token is not None:
        tokens.append(vit.reg_token.expand(batch, -1, -1))
    head = torch.cat(tokens, dim=1)
    if not vit.no_embed_class:
        head = head + vit.pos_embed[:, :vit.num_prefix_tokens]
    return head


def run_blocks(vit: nn.Module, patches: torch.Tensor) -> torch.Tensor:
    """Prepend the prefix tokens to position-embedded patch tokens; blocks and final norm -> (B, P + L, D)."""
    x = torch.cat([prefix_tokens(vit, patches.shape[0]), patches], dim=1)
    x = vit.norm_pre(vit.pos_drop(x))
    return vit.norm(vit.blocks(x))


def _grid(vit: nn.Module, images: torch.Tensor) -> tuple[int, ...]:
    p = vit.patch_embed.patch_size
    if len(p) == 3:  # a 3D ViT (backbones/vit3d.py) reads volumes (B, D, H, W) of its own input size only
        if tuple(images.shape[-3:]) != tuple(vit.patch_embed.img_size):
            raise ValueError(f"the 3D backbone takes volumes of size {vit.patch_embed.img_size}, "
                             f"got {tuple(images.shape[-3:])}")
        return tuple(vit.patch_embed.grid_size)
    return images.shape[-2] // p[0], images.shape[-1] // p[1]


def encode(vit: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """All tokens of images of any size (a multiple of the patch size); equals ``forward_features`` at the
    ViT's own size."""
    x = embed_patches(vit, images)
    return run_blocks(vit, x + patch_pos_embed(vit, _grid(vit, images)))


def encode_visible(vit: nn.Module, images: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Only the patches ``keep`` (B, K) enter the encoder; returns (B, P + K, D)."""
    x = embed_patches(vit, images) + patch_pos_embed(vit, _grid(vit, images))
    x = torch.gather(x, 1, keep.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
    return run_blocks(vit, x)


def encode_with_mask_tokens(vit: nn.Module, images: torch.Tensor, masked: torch.Tensor,
                            mask_token: torch.Tensor) -> torch.Tensor:
    """SimMIM's encoder input: ``mask_token`` (1, 1, D) replaces the embedding of every patch where ``masked``
    (B, L) is true, before the position embedding; the full sequence goes through the ViT -> (B, P + L, D)."""
    x = embed_patches(vit, images)
    x = torch.where(masked.unsqueeze(-1), mask_token.to(x.dtype), x)
    return run_blocks(vit, x + patch_pos_embed(vit, _grid(vit, images)))


def pooled(vit: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """The ViT's own pooled image feature (class token by default), as the classification stage uses it."""
    return vit.forward_head(tokens, pre_logits=True)


class ViewEncoder(nn.Module):
    """ViT (with target parameters) -> pooled feature -> head, for views of any size."""

    def __init__(self, vit: nn.Module, head: nn.Module):
        super().__init__()
        self.vit = vit
        self.head = head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(pooled(self.vit, encode(self.vit, images)))


def encode_views(model: nn.Module, views: list[torch.Tensor]) -> list[torch.Tensor]:
    """Run ``model`` once per group of same-sized views (one batch for all global, one for all local)."""
    out: list[torch.Tensor] = []
    i = 0
    while i < len(views):
        j = i
        while j < len(views) and views[j].shape == views[i].shape:
            j += 1
        out.extend(model(torch.cat(views[i:j])).chunk(j - i))
        i = j
    return out
