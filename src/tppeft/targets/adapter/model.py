"""Bottleneck adapters on the MLP of every transformer block. Written here because ``peft`` has no vision
(timm ViT) version of them; the shape follows peft's: options in the config (``peft.adapter``,
``peft.adaptformer``), a layer that wraps the base module (``base_layer``), and the injection.

- **Adapter** (Houlsby et al., ICML 2019, with Pfeiffer et al., EACL 2021's placement): sequential, after
  the MLP: ``h = mlp(x); h + up(gelu(down(h)))``.
- **AdaptFormer** (Chen et al., NeurIPS 2022): parallel beside the MLP, on the MLP's input (the block's
  ``norm2`` output): ``mlp(x) + s * up(relu(down(x)))``.

Both start with ``up`` at zero, so the adapted model starts as the backbone; ``down`` is random
(``nn.Linear``'s kaiming-uniform) so the first gradient reaches ``up`` and, through it, ``down``.
Neither can be merged into the backbone's weights: the bottleneck is a non-linear branch.
"""

from __future__ import annotations

from torch import nn

from tppeft.targets.base import Attached, TargetMethod


class Bottleneck(nn.Module):
    """down -> activation -> up, with ``up`` zero-initialised."""

    def __init__(self, dim: int, hidden: int, act: nn.Module):
        super().__init__()
        self.down = nn.Linear(dim, hidden)
        self.act = act
        self.up = nn.Linear(hidden, dim)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x):
        return self.up(self.act(self.down(x)))


class SequentialAdapterLayer(nn.Module):
    """A block's MLP followed by a residual bottleneck adapter."""

    def __init__(self, base_layer: nn.Module, dim: int, hidden: int):
        super().__init__()
        self.base_layer = base_layer
        self.adapter = Bottleneck(dim, hidden, nn.GELU())

    def forward(self, x):
        h = self.base_layer(x)
        return h + self.adapter(h)


class ParallelAdapterLayer(nn.Module):
    """A block's MLP with a scaled bottleneck branch beside it on the same input."""

    def __init__(self, base_layer: nn.Module, dim: int, hidden: int, scale: float):
        super().__init__()
        self.base_layer = base_layer
        self.adapter = Bottleneck(dim, hidden, nn.ReLU())
        self.scale = scale

    def forward(self, x):
        return self.base_layer(x) + self.scale * self.adapter(x)


def _wrap_mlps(vit: nn.Module, make) -> Attached:
    for block in vit.blocks:
        block.mlp = make(block.mlp, block.mlp.fc2.out_features)
    names = [n for n, _ in vit.named_parameters() if ".mlp.adapter." in n]
    return Attached(vit, names)


class AdapterMethod(TargetMethod):
    name = "adapter"
    hyper_keys = ("adapter",)

    def inject(self, vit: nn.Module) -> Attached:
        return _wrap_mlps(vit, lambda mlp, dim: SequentialAdapterLayer(mlp, dim, self.cfg.adapter.dim))


class AdaptFormerMethod(TargetMethod):
    name = "adaptformer"
    hyper_keys = ("adaptformer",)

    def inject(self, vit: nn.Module) -> Attached:
        opts = self.cfg.adaptformer
        return _wrap_mlps(vit, lambda mlp, dim: ParallelAdapterLayer(mlp, dim, opts.dim, opts.scale))
