"""A 3D ViT made from a 2D timm ViT: the same transformer blocks (so every target-parameter method attaches as
it does in 2D), a patch embedding inflated to 3D patches and the position embedding repeated over depth.

Inflation (I3D, Carreira & Zisserman, CVPR 2017; ViViT's tubelet embedding, Arnab et al., ICCV 2021): each 2D
kernel is spread evenly over the ``patch_depth`` slices of a 3D patch (divided by it), so a volume that is
constant along depth gives exactly the 2D model's tokens of that slice. The 2D model's input normalisation and
its three input channels are folded into the one-channel kernel and its bias: the 3D model reads grey volumes
in [0, 1] as they are (mean 0, std 1). The position table (resampled by timm to the in-plane grid) is repeated
for every depth position, as ViViT initialises its position embedding; depth is told apart by the content.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from tppeft.backbones.config import BackboneConfig
from tppeft.backbones.factory import Backbone, BackboneError


class PatchEmbed3D(nn.Module):
    """Grey volumes (B, D, H, W) (or (B, 1, D, H, W)) -> patch tokens (B, L, dim), L = depth x rows x columns
    of the patch grid in that order (``Conv3d`` then ``flatten``)."""

    def __init__(self, img_size: tuple[int, int, int], patch_size: tuple[int, int, int], embed_dim: int,
                 norm: nn.Module | None = None):
        super().__init__()
        self.img_size = tuple(img_size)
        self.patch_size = tuple(patch_size)
        self.grid_size = tuple(s // p for s, p in zip(img_size, patch_size, strict=True))
        self.num_patches = self.grid_size[0] * self.grid_size[1] * self.grid_size[2]
        self.proj = nn.Conv3d(1, embed_dim, self.patch_size, stride=self.patch_size)
        self.norm = norm if norm is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            x = x.unsqueeze(1)
        return self.norm(self.proj(x).flatten(2).transpose(1, 2))


def inflate_patch_embed(patch_embed: nn.Module, mean: tuple[float, ...], std: tuple[float, ...], patch_depth: int,
                        img_size: tuple[int, int, int]) -> PatchEmbed3D:
    """:class:`PatchEmbed3D` whose kernel is the 2D kernel on normalised grey-as-RGB input, spread over depth."""
    w, b = patch_embed.proj.weight.detach(), patch_embed.proj.bias
    bias = torch.zeros(w.shape[0]) if b is None else b.detach()
    m = torch.tensor(mean, dtype=w.dtype).view(1, -1, 1, 1).expand(1, w.shape[1], 1, 1)
    s = torch.tensor(std, dtype=w.dtype).view(1, -1, 1, 1).expand(1, w.shape[1], 1, 1)
    grey = (w / s).sum(1)  # grey x replicated to every channel, then (x - m) / s: one channel of weight sum(w / s)
    out = PatchEmbed3D(img_size, (patch_depth, *patch_embed.patch_size), w.shape[0], patch_embed.norm)
    with torch.no_grad():
        out.proj.weight.copy_(grey[:, None, None].expand(-1, 1, patch_depth, -1, -1) / patch_depth)
        out.proj.bias.copy_(bias - (w * m / s).sum((1, 2, 3)))
    return out


def repeat_pos_embed(pos_embed: torch.Tensor, num_prefix: int, depth: int) -> torch.Tensor:
    """(1, P + L, dim) 2D table -> (1, P + depth * L, dim): the patch part repeated for every depth position."""
    prefix, patches = pos_embed[:, :num_prefix], pos_embed[:, num_prefix:]
    return torch.cat([prefix, patches.repeat(1, depth, 1)], dim=1)


def inflate_backbone(backbone: Backbone, cfg: BackboneConfig) -> Backbone:
    """The 3D backbone of ``cfg`` (``dims: 3``) from its 2D ``backbone`` (built at the in-plane input size)."""
    vit = backbone.model
    if vit.no_embed_class or vit.reg_token is not None or getattr(vit, "dynamic_img_size", False):
        raise BackboneError(f"backbone.dims=3 needs a ViT with its class token inside the position table and no "
                            f"register tokens; '{cfg.name}' is not one")
    size = backbone.image_size
    img_size = (cfg.volume_depth, size, size)
    vit.patch_embed = inflate_patch_embed(vit.patch_embed, backbone.mean, backbone.std, cfg.patch_depth, img_size)
    grid = vit.patch_embed.grid_size
    vit.pos_embed = nn.Parameter(repeat_pos_embed(vit.pos_embed.detach(), vit.num_prefix_tokens, grid[0]),
                                 requires_grad=False)
    vit.requires_grad_(False)
    identity = {**backbone.identity, "dims": 3, "patch_size": list(vit.patch_embed.patch_size),
                "input_size": list(img_size)}
    # the checkpoint's MAE decoder predicts 2D patches: a 3D backbone's TPP stage trains a fresh one
    return dataclasses.replace(backbone, model=vit, mean=(0.0,), std=(1.0,), identity=identity,
                               decoder_state=None, decoder_meta={}, decoder_resampled=False)
