"""The compute budget behind ``baseline_matched``: the TPP stage's training cost in fine-tuning epochs.

Rule: count the floating-point operations of one training step (forward + backward) per image of each stage on
real training images with torch's ``FlopCounterMode``, multiply by the images each stage processes per epoch,
and give ``baseline_matched`` ``ceil(pretext.epochs * pretext FLOPs per epoch / fine-tuning FLOPs per epoch)``
extra fine-tuning epochs (``pretext.steps``: its whole epochs). Where the labelled images differ in number by seed
(whole volumes drawn per seed differ in slices), each seed's run is charged in its own fine-tuning epochs
(``extra_epochs_per_seed``), so a run's budget never depends on how many seeds the comparison has. Rounding up
means the baseline never gets less compute than TPP. Counted FLOPs are independent of the machine and its load
(timings are not) and include whatever the pretext task runs (decoder, views, teacher). Not counted: evaluation
passes (validation per epoch, the pretext's held-out loss) and the optimizer update, which are small beside the
forward and backward passes.

``baseline_matched.stage_shared_by`` = K divides the stage's cost by K before rounding: the share of one
fine-tuning run when one TPP stage serves K of them.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from tppeft.engine.loop import epoch_steps
from tppeft.experiment.context import Context
from tppeft.experiment.model import build_run_model
from tppeft.pretext import get_pretext

RULE = ("extra epochs = ceil(pretext.epochs x TPP training FLOPs per epoch / fine-tuning training FLOPs per epoch); "
        "FLOPs of forward + backward counted with torch FlopCounterMode")
RULE_WARMUP = (" (pretext.head_warmup_epochs count as TPP epochs at the full step's FLOPs, an upper bound: the "
               "head-only steps cost less)")
_PROBE_IMAGES = 4


def step_flops(loss_fn: Callable[[], torch.Tensor], module: torch.nn.Module) -> int:
    """FLOPs of one forward + backward of ``loss_fn``; gradients it leaves on ``module`` are cleared."""
    unfused = [m for m in module.modules() if getattr(m, "fused_attn", False)]
    for m in unfused:  # CPU's fused attention kernel has no FLOP formula in torch: count the explicit matmuls
        m.fused_attn = False
    try:
        with FlopCounterMode(display=False) as counter:
            loss_fn().backward()
    finally:
        for m in unfused:
            m.fused_attn = True
        module.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


def images_per_epoch(num_items: int, batch_size: int) -> int:
    steps, drop_last = epoch_steps(num_items, batch_size)
    return steps * batch_size if drop_last else num_items


def _extra(stage_in_epochs: float, shared: int) -> int:
    return math.ceil(stage_in_epochs / shared - 1e-9)


def matched_budget(ctx: Context) -> dict:
    """Extra fine-tuning epochs of ``baseline_matched`` and the numbers they come from."""
    cfg = ctx.cfg
    if cfg.baseline_matched.extra_epochs is not None:
        return {"extra_epochs": cfg.baseline_matched.extra_epochs, "rule": "set by baseline_matched.extra_epochs"}
    run = build_run_model(ctx, seed=0)  # a throwaway copy: every arm re-seeds its own init
    task = get_pretext(cfg.pretext)(ctx.backbone, run.vit, cfg.pretext).to(ctx.device)
    gen = torch.Generator(device=ctx.device).manual_seed(0)
    n_pre = ctx.num_pretext_images()  # 2D images the TPP stage sees (slices, for volumes; pretext.data too)
    pre_idx = torch.arange(min(n_pre, _PROBE_IMAGES))
    images = ctx.batch("train", pre_idx)
    pretext_per_image = step_flops(lambda: task.loss(images, gen), task) / len(pre_idx)
    labelled = {seed: ctx.num_labelled(seed) for seed in range(cfg.seeds)}  # whole volumes: differ by seed
    n_ft = labelled[0]
    ft_idx = torch.arange(min(n_ft, _PROBE_IMAGES))
    inputs, targets = ctx.task.train_batch(ctx, ft_idx, None)
    model = ctx.task.build_model(run.vit).to(ctx.device)
    finetune_per_image = step_flops(lambda: ctx.task.loss(model(inputs), targets), model) / len(ft_idx)
    pretext_epoch = pretext_per_image * images_per_epoch(n_pre, cfg.pretext.batch_size)
    finetune_epoch = finetune_per_image * images_per_epoch(n_ft, cfg.finetune.batch_size)
    stage = ctx.stage_config()  # pretext.steps and head_warmup_steps in epochs
    ratio = (stage.epochs + stage.head_warmup_epochs) * pretext_epoch / finetune_epoch
    shared = cfg.baseline_matched.stage_shared_by
    shared_rule = f"; the stage shared by {shared} fine-tuning runs: 1/{shared} of it" if shared > 1 else ""
    per_seed = {}
    if len(set(labelled.values())) > 1:  # each run charged in its own epochs: a seed's budget is its own
        stage_flops = ratio * finetune_epoch
        per_seed = {"extra_epochs_per_seed": {
            str(seed): _extra(stage_flops / (finetune_per_image * images_per_epoch(n, cfg.finetune.batch_size)),
                              shared) for seed, n in labelled.items()}}
    return {"extra_epochs": _extra(ratio, shared), "tpp_stage_in_finetune_epochs": ratio, **per_seed,
            "stage_shared_by": shared,
            "pretext_flops_per_image_step": pretext_per_image, "finetune_flops_per_image_step": finetune_per_image,
            "pretext_flops_per_epoch": pretext_epoch, "finetune_flops_per_epoch": finetune_epoch,
            "finetune_images_per_epoch": n_ft,
            "rule": RULE + (RULE_WARMUP if stage.head_warmup_epochs else "") + shared_rule}
