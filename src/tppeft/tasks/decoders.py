"""A UNETR-style segmentation decoder for a plain ViT, built from MONAI's UNETR blocks.

Hatamizadeh et al., "UNETR: Transformers for 3D Medical Image Segmentation", WACV 2022, in 2D and for any
power-of-two patch size: with patch ``p = 2**n`` the ViT's token grid is upsampled ``n`` times by 2 back to
full resolution. Level ``j`` (resolution ``H / 2**j``) gets a skip connection from transformer block
``feature_blocks[j-1]`` (progressively upsampled by transposed convolutions), the deepest block is the
bottleneck, and level 0 gets a convolutional stem on the input image itself.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from tppeft.options import ConfigError


def default_feature_blocks(depth: int, levels: int) -> list[int]:
    """``levels`` block indices evenly spaced over ``depth`` blocks, ending at the last (UNETR: 3, 6, 9, 12)."""
    return [round(depth * (k + 1) / levels) - 1 for k in range(levels)]


class UNETRHead(nn.Module):
    """Decoder from ViT block outputs (B, D, g, g) and the input image to per-pixel class logits."""

    def __init__(self, embed_dim: int, patch_size: int, num_classes: int, channels: int = 16,
                 in_chans: int = 3, norm: str = "instance"):
        from monai.networks.blocks import UnetOutBlock, UnetrBasicBlock, UnetrPrUpBlock, UnetrUpBlock

        super().__init__()
        self.levels = max(1, math.ceil(math.log2(patch_size)))
        n = self.levels
        self.stem = UnetrBasicBlock(2, in_chans, channels, kernel_size=3, stride=1, norm_name=norm, res_block=True)
        # skip j (1..n-1): block features upsampled by 2**(n-j) to resolution H / 2**j, channels * 2**j
        self.skips = nn.ModuleList([
            UnetrPrUpBlock(2, embed_dim, channels * 2 ** j, num_layer=n - j - 1, kernel_size=3, stride=1,
                           upsample_kernel_size=2, norm_name=norm, conv_block=True, res_block=True)
            for j in range(1, n)])
        # up j (n-1..0): from level j+1 to level j, fused with skip j (the stem at j = 0)
        self.ups = nn.ModuleList([
            UnetrUpBlock(2, embed_dim if j == n - 1 else channels * 2 ** (j + 1), channels * 2 ** j,
                         kernel_size=3, upsample_kernel_size=2, norm_name=norm, res_block=True)
            for j in reversed(range(n))])
        self.out = UnetOutBlock(2, channels, num_classes)

    def forward(self, image: torch.Tensor, features: list[torch.Tensor]) -> torch.Tensor:
        """``features``: one (B, D, g, g) map per level, shallow to deep (the last is the bottleneck)."""
        size = image.shape[-2:]
        base = features[-1].shape[-1] * 2 ** self.levels
        if size != (base, base):  # patch size not a power of two: decode at the nearest grid, resize at the end
            image = F.interpolate(image, size=(base, base), mode="bilinear", align_corners=False)
        skips = [self.stem(image)] + [block(f) for block, f in zip(self.skips, features[:-1], strict=True)]
        x = features[-1]
        for up, skip in zip(self.ups, reversed(skips), strict=True):
            x = up(x, skip)
        logits = self.out(x)
        if logits.shape[-2:] != size:
            logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        return logits


class ViTSegmenter(nn.Module):
    """timm ViT (with its target parameters) as encoder + :class:`UNETRHead`; returns (B, classes, H, W)."""

    def __init__(self, vit: nn.Module, num_classes: int, channels: int = 16, feature_blocks: list[int] | None = None):
        super().__init__()
        self.vit = vit
        patch = vit.patch_embed.patch_size[0]
        levels = max(1, math.ceil(math.log2(patch)))
        depth = len(vit.blocks)
        blocks = feature_blocks or default_feature_blocks(depth, levels)
        if len(blocks) != levels or max(blocks) >= depth:
            raise ConfigError(f"task.feature_blocks={blocks}: expected {levels} increasing block indices "
                             f"below {depth} (one per upsampling level of patch size {patch})")
        self.feature_blocks = blocks
        self.head = UNETRHead(vit.embed_dim, patch, num_classes, channels)

    def block_features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Patch-token outputs (B, D, g, g) of ``feature_blocks``, caught by forward hooks during the ViT's own
        forward, so that a method that wraps the block stack (VPT's prompts) acts on them as it does for
        classification (timm's ``forward_intermediates`` would step through the blocks one by one)."""
        caught: dict[int, torch.Tensor] = {}
        hooks = [self.vit.blocks[i].register_forward_hook(lambda _m, _in, out, i=i: caught.__setitem__(i, out))
                 for i in self.feature_blocks]
        try:
            self.vit.forward_features(images)
        finally:
            for h in hooks:
                h.remove()
        gh, gw = self.vit.patch_embed.grid_size
        # patch tokens are the last gh * gw of the sequence, whatever prefix (class, registers, prompts) precedes
        return [caught[i][:, -gh * gw:].transpose(1, 2).reshape(len(images), -1, gh, gw) for i in self.feature_blocks]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(images, self.block_features(images))
