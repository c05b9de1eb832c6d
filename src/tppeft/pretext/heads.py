"""Temporary heads of pretext tasks."""

from __future__ import annotations

from functools import partial

import torch
from timm.layers import LayerNorm
from timm.models.vision_transformer import Block
from torch import nn


class MAEDecoder(nn.Module):
    """MAE's light decoder: embed visible latents, insert mask tokens, transformer blocks, predict pixels.

    Parameter names match the bundled b0 decoder (``dec_embed``, ``mask_token``, ``dec_pos``,
    ``dec_blocks``, ``dec_norm``, ``dec_pred``) so that a checkpoint's decoder loads as it is. The defaults are
    b0's: no qkv bias, and ``norm_eps`` None = timm's Block LayerNorm (eps 1e-6) in the blocks and torch's
    (eps 1e-5) at the end. An imported decoder brings its own (MAE's code: qkv bias, eps 1e-6 everywhere;
    Hugging Face's ViTMAE: its ``qkv_bias`` and ``layer_norm_eps`` everywhere).
    """

    def __init__(self, embed_dim: int, num_patches: int, patch_dim: int, dim: int = 128, depth: int = 2,
                 heads: int = 4, mlp_ratio: float = 4.0, qkv_bias: bool = False, norm_eps: float | None = None):
        super().__init__()
        block_norm = {} if norm_eps is None else {"norm_layer": partial(LayerNorm, eps=norm_eps)}
        self.dec_embed = nn.Linear(embed_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.dec_pos = nn.Parameter(torch.zeros(1, num_patches + 1, dim))
        self.dec_blocks = nn.Sequential(*[Block(dim, heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, **block_norm)
                                          for _ in range(depth)])
        self.dec_norm = nn.LayerNorm(dim, eps=1e-5 if norm_eps is None else norm_eps)
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


class ProjectionHead(nn.Module):
    """SimCLR's projection MLP, Linear -> GELU -> Linear.

    No batch norm (lightly's default has it): batch statistics would make the held-out pretext loss depend
    on train/eval mode, and its running statistics start untrained, so start and end would not compare.
    """

    def __init__(self, in_dim: int, hidden_dim: int = 512, out_dim: int = 128):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)


class DINOHead(nn.Module):
    """DINO's head: a 3-layer MLP to an L2-normalised bottleneck, then a prototype layer whose weight rows
    are L2-normalised (DINO's weight-normalised last layer with its gain fixed to 1: cosine logits).

    ``gain``: a per-prototype factor on the logits, DINO's trained weight-norm gain ``g`` (a checkpoint made
    with ``norm_last_layer=False``); without it every gain is 1.
    ``use_bn``: batch norm after both hidden layers (DINO's ``use_bn_in_head``), always with the batch's own
    statistics: the teacher runs the student's modules, so running averages would mix the two.
    """

    def __init__(self, in_dim: int, out_dim: int = 1024, hidden_dim: int = 512, bottleneck_dim: int = 128,
                 gain: bool = False, use_bn: bool = False):
        super().__init__()

        def hidden(i: int) -> list[nn.Module]:
            norm = [nn.BatchNorm1d(hidden_dim, track_running_stats=False)] if use_bn else []
            return [nn.Linear(i, hidden_dim), *norm, nn.GELU()]

        self.mlp = nn.Sequential(*hidden(in_dim), *hidden(hidden_dim), nn.Linear(hidden_dim, bottleneck_dim))
        self.prototypes = nn.Parameter(torch.empty(out_dim, bottleneck_dim))
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        nn.init.trunc_normal_(self.prototypes, std=0.02)
        self.gain = nn.Parameter(torch.ones(out_dim)) if gain else None

    def last_layer_parameters(self) -> list[nn.Parameter]:
        """The prototype layer: the prototypes and, when trained, their gains."""
        return [self.prototypes] + ([self.gain] if self.gain is not None else [])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = nn.functional.normalize(self.mlp(x), dim=-1)
        logits = z @ nn.functional.normalize(self.prototypes, dim=-1).T
        return logits if self.gain is None else logits * self.gain


class PixelHead(nn.Module):
    """SimMIM's one-layer prediction head: a linear map from each token to its patch's pixels."""

    def __init__(self, embed_dim: int, patch_dim: int):
        super().__init__()
        self.proj = nn.Linear(embed_dim, patch_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.proj(tokens)


class FeaturePredictor(nn.Module):
    """Residual linear predictor, zero-initialised: at the start it predicts the input features themselves,
    so the first loss measures the real gap between masked-view and full-image features."""

    def __init__(self, dim: int):
        super().__init__()
        self.proj = nn.Linear(dim, dim)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.proj(x)
