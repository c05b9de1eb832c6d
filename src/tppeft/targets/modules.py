"""Where methods attach on a timm ViT: the linears of every transformer block, by short name."""

from __future__ import annotations

import re

from torch import nn

# timm ViT block linears by short name; anchored so that patch_embed.proj and head never match.
MODULE_PATTERNS = {"qkv": r"attn\.qkv", "proj": r"attn\.proj", "fc1": r"mlp\.fc1", "fc2": r"mlp\.fc2"}


def target_modules_regex(targets: list[str]) -> str:
    """A regex that ``peft`` full-matches against module names, e.g. ``blocks.3.attn.qkv``."""
    alternatives = "|".join(MODULE_PATTERNS[t] for t in targets)
    return rf"blocks\.\d+\.({alternatives})"


def block_linears(vit: nn.Module, targets: list[str]) -> list[tuple[str, nn.Linear]]:
    """(name, module) of the block linears that ``targets`` names, in model order."""
    pattern = re.compile(target_modules_regex(targets))
    return [(n, m) for n, m in vit.named_modules() if isinstance(m, nn.Linear) and pattern.fullmatch(n)]

