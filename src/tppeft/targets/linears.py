"""The linears of a transformer block that methods attach to, by short name, and the presets of
``peft.targets``. Torch-free: option models name them."""

from __future__ import annotations

from typing import Any, Literal

BLOCK_LINEARS = ("qkv", "proj", "fc1", "fc2")
# Readable presets for `peft.targets`: the linears of every transformer block they stand for.
TARGET_PRESETS = {"attention": ["qkv", "proj"], "mlp": ["fc1", "fc2"], "all": list(BLOCK_LINEARS)}
BlockLinear = Literal["qkv", "proj", "fc1", "fc2"]


def expand_presets(v: Any) -> Any:
    """A preset name (or a list mixing names and presets) as the list of linears it stands for, each once."""
    items = [v] if isinstance(v, str) else v
    if not isinstance(items, list):
        return v
    out: list = []
    for item in items:
        for name in TARGET_PRESETS.get(item, [item]) if isinstance(item, str) else [item]:
            if name not in out:
                out.append(name)
    return out
