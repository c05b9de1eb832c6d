"""SSF, scaling and shifting features (Lian et al., NeurIPS 2022), written here because ``peft`` has no
version of it. Options: ``peft.targets`` (which block linears), ``peft.ssf.norms`` (also every LayerNorm).

After each chosen op, ``y * scale + shift`` per output channel; scale starts near 1 and shift near 0
(normal, std 0.02, as in the paper). Being linear, it merges into the op before it: a linear's rows and
bias, or a LayerNorm's affine, which gives back a plain timm ViT.
"""

from __future__ import annotations

import torch
from torch import nn

from tppeft.targets.base import Attached, TargetMethod, TargetParamError
from tppeft.targets.modules import block_linears

INIT_STD = 0.02


class SSFLayer(nn.Module):
    """``base_layer`` (a Linear or LayerNorm) followed by a per-channel scale and shift."""

    def __init__(self, base_layer: nn.Module, channels: int):
        super().__init__()
        self.base_layer = base_layer
        self.scale = nn.Parameter(torch.empty(channels))
        self.shift = nn.Parameter(torch.empty(channels))
        nn.init.normal_(self.scale, mean=1.0, std=INIT_STD)
        nn.init.normal_(self.shift, std=INIT_STD)

    def forward(self, x):
        return self.base_layer(x) * self.scale + self.shift

    @torch.no_grad()
    def merged(self) -> nn.Module:
        """The base layer with scale and shift folded into its weight and bias."""
        base = self.base_layer
        if getattr(base, "bias", None) is None or getattr(base, "weight", None) is None:
            raise TargetParamError(f"SSF cannot be merged into {type(base).__name__} without weight and bias")
        shape = (-1,) + (1,) * (base.weight.dim() - 1)
        base.weight.mul_(self.scale.view(shape))
        base.bias.mul_(self.scale).add_(self.shift)
        return base


def _ssf_sites(vit: nn.Module, targets: list[str], norms: bool) -> list[tuple[str, nn.Module, int]]:
    sites = [(n, m, m.out_features) for n, m in block_linears(vit, targets)]
    if norms:
        sites += [(n, m, m.normalized_shape[0]) for n, m in vit.named_modules()
                  if isinstance(m, nn.LayerNorm) and m.elementwise_affine]
    return sites


class SsfMethod(TargetMethod):
    name = "ssf"
    hyper_keys = ("targets", "ssf")

    def inject(self, vit: nn.Module) -> Attached:
        for name, module, channels in _ssf_sites(vit, self.cfg.targets, self.cfg.ssf.norms):
            vit.set_submodule(name, SSFLayer(module, channels))
        names = [n for n, _ in vit.named_parameters() if n.endswith((".scale", ".shift"))
                 and isinstance(vit.get_submodule(n.rsplit(".", 1)[0]), SSFLayer)]
        return Attached(vit, names)

    def merge_into(self, handle: Attached) -> nn.Module:
        vit = handle.vit
        for name, module in list(vit.named_modules()):
            if isinstance(module, SSFLayer):
                vit.set_submodule(name, module.merged())
        return vit
