"""Visual prompt tuning (Jia et al., ECCV 2022), written here because ``peft``'s prompt methods are for
text models only. Options: ``peft.vpt`` (tokens, dropout).

Learnable prompt tokens sit after the prefix tokens (class token, registers) and before the patch tokens:
``vpt_shallow`` inserts one set before the first block; ``vpt_deep`` gives every block its own set,
replacing the previous block's prompt outputs. The prompts are inserted by the ViT's block stack itself
and removed after its last block, so every consumer of the encoder output (timm's pooling and head, the
MAE decoder of the TPP stage, which masks patch tokens only) sees prefix + patch tokens as without VPT,
and the prompts are always present, whichever tokens the blocks are given.

Prompts start uniform in +-sqrt(6 / (3 * patch^2 + dim)) as in the paper. Not mergeable.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from tppeft.targets.base import Attached, TargetMethod, TargetParamError


class PromptedBlocks(nn.Sequential):
    """A ViT's ``blocks`` (same children, same names) that carries prompt tokens through them.

    ``prompts`` has shape (1 or depth, tokens, dim): one set (shallow) or one per block (deep). It holds no
    other submodule, so that iterating, indexing and ``len`` see the transformer blocks only.
    """

    def __init__(self, blocks: nn.Sequential, num_prefix: int, tokens: int, deep: bool, init_bound: float,
                 dropout: float = 0.0):
        super().__init__(*blocks)
        dim = blocks[0].norm1.normalized_shape[0]
        self.num_prefix = num_prefix
        self.prompts = nn.Parameter(torch.empty(len(blocks) if deep else 1, tokens, dim))
        nn.init.uniform_(self.prompts, -init_bound, init_bound)
        self.prompt_dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p, t = self.num_prefix, self.prompts.shape[1]
        for i, block in enumerate(self):
            if i < len(self.prompts):
                prompt = F.dropout(self.prompts[i], self.prompt_dropout, self.training)
                prompt = prompt.expand(x.shape[0], -1, -1).to(x.dtype)
                rest = x[:, p:] if i == 0 else x[:, p + t:]
                x = torch.cat([x[:, :p], prompt, rest], dim=1)
            x = block(x)
        return torch.cat([x[:, :p], x[:, p + t:]], dim=1)


class _Vpt(TargetMethod):
    hyper_keys = ("vpt.tokens",)
    deep: bool

    def inject(self, vit: nn.Module) -> Attached:
        if isinstance(vit.blocks, PromptedBlocks):
            raise TargetParamError("VPT is already attached to this backbone")
        patch = vit.patch_embed.patch_size[0]
        bound = math.sqrt(6.0 / (3 * patch * patch + vit.embed_dim))
        vit.blocks = PromptedBlocks(vit.blocks, vit.num_prefix_tokens, self.cfg.vpt.tokens, self.deep, bound,
                                    self.cfg.vpt.dropout)
        return Attached(vit, ["blocks.prompts"])


class VptShallowMethod(_Vpt):
    name = "vpt_shallow"
    deep = False


class VptDeepMethod(_Vpt):
    name = "vpt_deep"
    deep = True
