"""A UNETR decoder in 3D for a 3D ViT with anisotropic patches (depth x p x p), built from MONAI's UNETR blocks.

As in 2D (``tasks/decoders.py``): with in-plane patch ``p = 2**n`` the token grid is upsampled ``n`` times by 2
in-plane; depth is upsampled by 2 only at the finest levels, until it has grown by the patch depth (a power of
two, at most ``p``): level ``j`` has depth ``D / min(patch_depth, 2**j)``. Skip ``j`` comes from transformer
block ``feature_blocks[j-1]``, the deepest block is the bottleneck, level 0 gets a convolutional stem on the
volume itself. MONAI's ``UnetrPrUpBlock`` upsamples every step by one kernel; a skip whose steps differ in depth
is its chain of MONAI's transposed convolutions and residual blocks, in ``UnetrPrUpBlock``'s order.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from tppeft.options import ConfigError
from tppeft.tasks.decoders import default_feature_blocks


def depth_factor(level: int, patch_depth: int) -> int:
    """How much coarser than the input the depth is at ``level`` (resolution ``H / 2**level`` in-plane)."""
    return min(patch_depth, 2 ** level)


class UNETR3DHead(nn.Module):
    """Decoder from 3D ViT block outputs (B, dim, gd, g, g) and the volume (B, 1, D, H, W) to voxel logits."""

    def __init__(self, embed_dim: int, patch: tuple[int, int, int], num_classes: int, channels: int = 16,
                 norm: str = "instance"):
        from monai.networks.blocks import UnetOutBlock, UnetrBasicBlock, UnetrUpBlock

        super().__init__()
        pd, p = patch[0], patch[1]
        n = round(math.log2(p))
        if 2 ** n != p or patch[2] != p or 2 ** round(math.log2(pd)) != pd or pd > p:
            raise ConfigError(f"the 3D decoder needs square in-plane patches of a power of two and a patch depth that "
                              f"is a power of two no larger (got {patch}); set backbone.patch_depth")
        self.levels = n

        def kernel(j: int) -> tuple[int, int, int]:  # upsampling from level j + 1 to level j
            return depth_factor(j + 1, pd) // depth_factor(j, pd), 2, 2

        self.stem = UnetrBasicBlock(3, 1, channels, kernel_size=3, stride=1, norm_name=norm, res_block=True)
        self.skips = nn.ModuleList([self._skip(embed_dim, channels * 2 ** j, [kernel(i) for i in reversed(range(j, n))],
                                               norm) for j in range(1, n)])
        self.ups = nn.ModuleList([
            UnetrUpBlock(3, embed_dim if j == n - 1 else channels * 2 ** (j + 1), channels * 2 ** j, kernel_size=3,
                         upsample_kernel_size=kernel(j), norm_name=norm, res_block=True)
            for j in reversed(range(n))])
        self.out = UnetOutBlock(3, channels, num_classes)

    @staticmethod
    def _skip(embed_dim: int, channels: int, kernels: list[tuple[int, int, int]], norm: str) -> nn.Sequential:
        """UnetrPrUpBlock's path (a transposed convolution, then transposed convolution + residual block per
        further step) with one upsampling kernel per step."""
        from monai.networks.blocks.dynunet_block import UnetResBlock, get_conv_layer

        def up(cin: int, k: tuple[int, int, int]) -> nn.Module:
            return get_conv_layer(3, cin, channels, kernel_size=k, stride=k, conv_only=True, is_transposed=True)

        steps: list[nn.Module] = [up(embed_dim, kernels[0])]
        steps += [nn.Sequential(up(channels, k), UnetResBlock(3, channels, channels, kernel_size=3, stride=1,
                                                              norm_name=norm)) for k in kernels[1:]]
        return nn.Sequential(*steps)

    def forward(self, volume: torch.Tensor, features: list[torch.Tensor]) -> torch.Tensor:
        """``features``: one (B, dim, gd, g, g) map per level, shallow to deep (the last is the bottleneck)."""
        skips = [self.stem(volume)] + [block(f) for block, f in zip(self.skips, features[:-1], strict=True)]
        x = features[-1]
        for up, skip in zip(self.ups, reversed(skips), strict=True):
            x = up(x, skip)
        return self.out(x)


class ViTSegmenter3D(nn.Module):
    """3D ViT (with its target parameters) as encoder + :class:`UNETR3DHead`; (B, D, H, W) -> (B, classes, D, H, W)."""

    def __init__(self, vit: nn.Module, num_classes: int, channels: int = 16, feature_blocks: list[int] | None = None):
        super().__init__()
        self.vit = vit
        patch = tuple(vit.patch_embed.patch_size)
        levels = max(1, round(math.log2(patch[1])))
        depth = len(vit.blocks)
        blocks = feature_blocks or default_feature_blocks(depth, levels)
        if len(blocks) != levels or max(blocks) >= depth:
            raise ConfigError(f"task.feature_blocks={blocks}: expected {levels} increasing block indices below "
                              f"{depth} (one per upsampling level of patch size {patch})")
        self.feature_blocks = blocks
        self.head = UNETR3DHead(vit.embed_dim, patch, num_classes, channels)

    def block_features(self, volumes: torch.Tensor) -> list[torch.Tensor]:
        """Patch-token outputs (B, dim, gd, g, g) of ``feature_blocks``, caught by forward hooks during the ViT's
        own forward (as in 2D, so that methods that wrap the block stack act on them)."""
        caught: dict[int, torch.Tensor] = {}
        hooks = [self.vit.blocks[i].register_forward_hook(lambda _m, _in, out, i=i: caught.__setitem__(i, out))
                 for i in self.feature_blocks]
        try:
            self.vit.forward_features(volumes)
        finally:
            for h in hooks:
                h.remove()
        gd, gh, gw = self.vit.patch_embed.grid_size
        tokens = gd * gh * gw
        return [caught[i][:, -tokens:].transpose(1, 2).reshape(len(volumes), -1, gd, gh, gw)
                for i in self.feature_blocks]

    def forward(self, volumes: torch.Tensor) -> torch.Tensor:
        return self.head(volumes[:, None], self.block_features(volumes))
