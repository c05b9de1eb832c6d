"""The model of one run: a fresh copy of the backbone and its trainable set, and the check that a run left the
frozen weights as they were."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from tppeft.backbones import frozen_state_digest
from tppeft.engine.checkpoint import copy_into
from tppeft.errors import BackboneChangedError
from tppeft.experiment.seeds import stream_seed
from tppeft.targets import Attached, TargetMethod, get_target_method

if TYPE_CHECKING:
    from tppeft.experiment.context import Context


@dataclass
class RunModel:
    """A fresh copy of the backbone with its trainable set: attached target parameters (``method``), nothing
    (a linear probe: ``method`` None, no names) or the backbone's own weights (``added`` False)."""

    vit: nn.Module
    method: TargetMethod | None
    handle: Attached | None
    target_names: list[str]
    frozen_digest: str
    backbone_params: int  # parameters of the backbone itself (selected ones included, added ones not)
    added: bool = True  # the trainable tensors are new parameters, not the backbone's own
    lr_scale: float = 1.0  # learning-rate factor of the trainable tensors in fine-tuning

    def target_params(self) -> list[nn.Parameter]:
        params = dict(self.vit.named_parameters())
        return [params[n] for n in self.target_names]

    def target_tensors(self) -> dict[str, torch.Tensor]:
        return dict(zip(self.target_names, self.target_params(), strict=True))

    def load_targets(self, tensors: dict[str, torch.Tensor]) -> None:
        copy_into(self.target_params(), [tensors[n] for n in self.target_names])

    def frozen_unchanged(self) -> bool:
        return frozen_state_digest(self.vit, set(self.target_names)) == self.frozen_digest

    def counts(self) -> dict:
        """Target-parameter count and its percentage of the backbone's own parameters."""
        trainable = sum(p.numel() for p in self.target_params())
        return {"target_params": trainable, "backbone_params": self.backbone_params,
                "target_percent": round(100 * trainable / max(1, self.backbone_params), 4)}

    def counts_text(self) -> str:
        c = self.counts()
        if self.method is not None:
            what = f"{self.method.name}: {c['target_params']:,} target parameters"
        else:
            what = "all backbone weights trained" if not self.added else "head only: 0 target parameters"
        return f"{what} ({c['target_percent']:.2f}% of {c['backbone_params']:,} backbone parameters)"


def build_run_model(ctx: Context, seed: int, init: Path | None = None) -> RunModel:
    """Backbone copy + target parameters, initialised from ``seed`` (or loaded from ``init``)."""
    vit = ctx.backbone.fresh_model()
    backbone_params = sum(p.numel() for p in vit.parameters())
    method = get_target_method(ctx.cfg.peft, ctx.backbone.identity)
    torch.manual_seed(stream_seed(seed, "targets"))
    handle, names = method.attach(vit)
    vit.to(ctx.device)
    if init is not None:
        method.load(handle, init)
    digest = frozen_state_digest(vit, set(names))
    return RunModel(vit, method, handle, names, digest, backbone_params)



def backbone_unchanged(ctx: Context, run: RunModel, tag: str) -> bool:
    """Compare the run's frozen weights and the shared backbone template with their digests from before the run.

    True when neither changed; a change raises :class:`BackboneChangedError` (one line naming which).
    """
    frozen = run.frozen_unchanged()
    template = not ctx.template_digest or frozen_state_digest(ctx.backbone.model) == ctx.template_digest
    if not frozen:
        raise BackboneChangedError(f"{tag}: frozen backbone weights changed during the run")
    if not template:
        raise BackboneChangedError(f"{tag}: the shared backbone template changed during the run")
    return frozen and template
