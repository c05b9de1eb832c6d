"""The arms of a comparison: how each one builds its model and how many fine-tuning epochs it gets.

Every arm sees the same data, splits, augmentation, evaluation and, for a seed, the same head init and data
order (streams of :func:`tppeft.stages.stream_seed`); they differ only in what is trained and from where.
"""

from __future__ import annotations

import torch

from tppeft.backbones import frozen_state_digest
from tppeft.config import pretext_of_arm
from tppeft.data import iterate_batches
from tppeft.stages import Context, RunModel, build_run_model, generator, stream_seed
from tppeft.targets.eva import attach_eva_lora

ARM_HELP = {
    "baseline": "ordinary PEFT: target parameters start from their usual init (LoRA: A random, B zero)",
    "tpp": "target parameters pre-trained by the pretext task, then the same fine-tuning",
    "baseline_matched": "ordinary PEFT with extra fine-tuning epochs equal in training compute to the TPP stage",
    "eva": "LoRA initialised by peft's EVA (SVD of the layers' input activations on the training images)",
    "linear_probe": "reference: the classification head only; no target parameters, backbone frozen",
    "full_finetune": "reference: every backbone weight trained (lr x full_finetune.lr_scale), no target parameters",
    "tpp_<pretext>": "tpp with another pretext task (e.g. tpp_simclr); the other pretext.* keys are shared",
}
# Arms whose model carries the PEFT method's target parameters (the others are references without them).
PEFT_ARMS = ("baseline", "tpp", "baseline_matched", "eva")


def eva_batches(ctx: Context, seed: int) -> list[torch.Tensor]:
    """Training images as model input, not augmented, in the seed's own order (``eva`` stream)."""
    n = len(ctx.data["train"])
    order = generator(seed, "eva")
    return [ctx.batch("train", idx) for idx in iterate_batches(n, ctx.cfg.eva.batch_size, order)]


def build_arm_model(ctx: Context, arm: str, seed: int) -> tuple[RunModel, dict]:
    """The run model of ``arm`` for ``seed`` and facts about its initialisation for the run record."""
    if arm in ("baseline", "baseline_matched") or pretext_of_arm(arm, ctx.cfg.pretext) is not None:
        return build_run_model(ctx, seed), {}
    vit = ctx.backbone.fresh_model().to(ctx.device)
    own = sum(p.numel() for p in vit.parameters())
    if arm == "eva":
        torch.manual_seed(stream_seed(seed, "targets"))
        method, handle, names, used = attach_eva_lora(vit, ctx.cfg.peft, ctx.cfg.eva, eva_batches(ctx, seed),
                                                      ctx.backbone.identity)
        ranks = lora_ranks(vit)
        info = {"eva_batches": used, "eva_ranks": ranks}
        ctx.log(f"[eva seed {seed}] EVA init from {used} batches; ranks per layer "
                f"{min(ranks.values())}..{max(ranks.values())} (sum {sum(ranks.values())})")
        return RunModel(vit, method, handle, names, frozen_state_digest(vit, set(names)), own), info
    if arm == "linear_probe":
        return RunModel(vit, None, None, [], frozen_state_digest(vit), own), {}
    if arm == "full_finetune":
        names = [n for n, _ in vit.named_parameters()]
        vit.requires_grad_(True)
        return RunModel(vit, None, None, names, frozen_state_digest(vit, set(names)), own, added=False,
                        lr_scale=ctx.cfg.full_finetune.lr_scale), {}
    raise ValueError(f"unknown arm '{arm}'")


def lora_ranks(vit: torch.nn.Module) -> dict[str, int]:
    """Rank of every LoRA layer of ``vit`` by module name (EVA may give layers different ranks)."""
    return {n.split(".lora_A")[0]: p.shape[0] for n, p in vit.named_parameters() if ".lora_A" in n}
