"""Methods that *select* existing backbone parameters instead of adding new ones, written here because
``peft`` has no such selection: BitFit (Ben Zaken et al., ACL 2022) trains every bias of the ViT
(patch embedding, attention, MLP and LayerNorm biases); LayerNorm tuning trains every LayerNorm's weight
and bias. Their target parameters start at the pre-trained values, so baseline and TPP differ only in
what the TPP stage does to them; all other weights stay bit-identical, which every run checks.
Merging is trivial: the tuned ViT is already a plain timm model.
"""

from __future__ import annotations

from torch import nn

from tppeft.targets.base import Attached, TargetMethod


class _Selective(TargetMethod):

    def select(self, vit: nn.Module) -> list[str]:
        raise NotImplementedError

    def inject(self, vit: nn.Module) -> Attached:
        return Attached(vit, self.select(vit))

    def merge_into(self, handle: Attached) -> nn.Module:
        return handle.vit


class BitFitMethod(_Selective):
    name = "bitfit"

    def select(self, vit: nn.Module) -> list[str]:
        return [n for n, _ in vit.named_parameters() if n.endswith(".bias")]


class LayerNormMethod(_Selective):
    name = "layernorm"

    def select(self, vit: nn.Module) -> list[str]:
        return [f"{m}.{p}" for m, mod in vit.named_modules() if isinstance(mod, nn.LayerNorm)
                for p, _ in mod.named_parameters(recurse=False)]
