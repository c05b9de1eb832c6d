"""How an arm's run model starts: the model builders that :attr:`tppeft.arms.Arm.model` names, and their registry.

An arm (:mod:`tppeft.arms`) states facts the configuration validates; how its model is made needs the run's
context, so it lives here, beside the comparison that calls it, and the arms stay below the configuration.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from tppeft.backbones import frozen_state_digest
from tppeft.data import iterate_batches
from tppeft.experiment.model import RunModel, build_run_model
from tppeft.experiment.seeds import generator, stream_seed

if TYPE_CHECKING:
    from tppeft.arms import Arm
    from tppeft.experiment.context import Context

Builder = Callable[["Context", int], tuple[RunModel, dict]]  # (context, seed) -> the model, facts for the record

_BUILDERS: dict[str, Builder] = {}


def register_builder(name: str, build: Builder) -> Builder:
    """Make ``build`` the builder of arms whose ``model`` is ``name``; a name may be registered once."""
    if name in _BUILDERS:
        raise ValueError(f"model builder '{name}' is already registered")
    _BUILDERS[name] = build
    return build


def builder_names() -> list[str]:
    """Every registered builder's name, in registration order."""
    return list(_BUILDERS)


def build_arm_model(ctx: Context, arm: Arm, seed: int) -> tuple[RunModel, dict]:
    """The run model of ``arm`` for ``seed`` and facts about its init for the run record."""
    if arm.model not in _BUILDERS:
        raise ValueError(f"arm '{arm.name}' names model builder '{arm.model}', which is not registered; "
                         f"registered: {builder_names()}")
    return _BUILDERS[arm.model](ctx, seed)


def fresh_copy(ctx: Context) -> tuple[torch.nn.Module, int]:
    """A copy of the backbone on the run's device, and its own parameter count."""
    vit = ctx.backbone.fresh_model().to(ctx.device)
    return vit, sum(p.numel() for p in vit.parameters())


def with_targets(ctx: Context, seed: int) -> tuple[RunModel, dict]:
    """A backbone copy with the method's target parameters, initialised from the seed's ``targets`` stream."""
    return build_run_model(ctx, seed), {}


def frozen(ctx: Context, seed: int) -> tuple[RunModel, dict]:
    """A plain backbone copy: no target parameters, nothing of the backbone trainable."""
    vit, own = fresh_copy(ctx)
    return RunModel(vit, None, None, [], frozen_state_digest(vit), own), {}


def whole_backbone(ctx: Context, seed: int) -> tuple[RunModel, dict]:
    """A backbone copy whose own weights are the trainable set, at ``full_finetune.lr_scale``."""
    vit, own = fresh_copy(ctx)
    names = [n for n, _ in vit.named_parameters()]
    vit.requires_grad_(True)
    return RunModel(vit, None, None, names, frozen_state_digest(vit, set(names)), own, added=False,
                    lr_scale=ctx.cfg.full_finetune.lr_scale), {}


def eva_batches(ctx: Context, seed: int) -> list[torch.Tensor]:
    """Training images as model input, not augmented, in the seed's own order (``eva`` stream)."""
    n = len(ctx.data["train"])
    order = generator(seed, "eva")
    return [ctx.batch("train", idx) for idx in iterate_batches(n, ctx.cfg.eva.batch_size, order)]


def lora_ranks(vit: torch.nn.Module) -> dict[str, int]:
    """Rank of every LoRA layer of ``vit`` by module name (EVA may give layers different ranks)."""
    return {n.split(".lora_A")[0]: p.shape[0] for n, p in vit.named_parameters() if ".lora_A" in n}


def eva(ctx: Context, seed: int) -> tuple[RunModel, dict]:
    """A backbone copy with LoRA initialised by EVA from the training images; the ranks it chose per layer."""
    from tppeft.targets.eva import attach_eva_lora  # peft's EVA: imported only by the runs that use it

    vit, own = fresh_copy(ctx)
    torch.manual_seed(stream_seed(seed, "targets"))
    method, handle, names, used = attach_eva_lora(vit, ctx.cfg.peft, ctx.cfg.eva, eva_batches(ctx, seed),
                                                  ctx.backbone.identity)
    ranks = lora_ranks(vit)
    ctx.log(f"[eva seed {seed}] EVA init from {used} batches; ranks per layer "
            f"{min(ranks.values())}..{max(ranks.values())} (sum {sum(ranks.values())})")
    run = RunModel(vit, method, handle, names, frozen_state_digest(vit, set(names)), own)
    return run, {"eva_batches": used, "eva_ranks": ranks}


register_builder("targets", with_targets)
register_builder("frozen", frozen)
register_builder("whole_backbone", whole_backbone)
register_builder("eva", eva)
