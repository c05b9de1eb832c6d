"""The TPP stage: the target parameters are trained with the pretext objective, saved, and the pretext head is
dropped. Uses :func:`tppeft.engine.train`, like the fine-tuning stage; only objective and trainable set differ."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from tppeft import distributed
from tppeft.config import PretextConfig
from tppeft.data import iterate_batches
from tppeft.engine import train
from tppeft.engine.checkpoint import copy_into, prefixed, unprefixed
from tppeft.engine.devices import compile_blocks
from tppeft.engine.loop import epoch_steps
from tppeft.experiment.checkpoints import resume_stage, stage_checkpointer
from tppeft.experiment.context import Context
from tppeft.experiment.diagnostics import probe_change_text, probe_possible, probe_targets, target_movement
from tppeft.experiment.model import RunModel, build_run_model
from tppeft.experiment.seeds import generator
from tppeft.faults import kill_point
from tppeft.io import append_jsonl
from tppeft.options import ConfigError
from tppeft.pretext import get_pretext
from tppeft.rundir import RunPaths
from tppeft.tracking import scheduled_lr, track_epoch

# A TPP stage whose held-out pretext loss falls by less than this fraction is reported as not moving.
MIN_PRETEXT_GAIN = 0.01


def pretext_eval_loss(ctx: Context, task: nn.Module, seed: int) -> float:
    """Pretext loss on the validation images with fixed masks and no augmentation (start/end comparable).

    Under torchrun each process scores its share of every batch, with the masks of the whole batch (as in
    training), and the weighted sums are added over processes.
    """
    task.eval()
    gen = generator(seed, "pretext_eval", ctx.device)
    n = ctx.num_images("val")
    total = torch.zeros((), device=ctx.device, dtype=torch.float64)
    world = distributed.world_size()
    with ctx.inference():
        for idx in iterate_batches(n, ctx.cfg.eval_batch_size):
            start, stop = distributed.eval_share(len(idx))
            with distributed.batch_share(start, stop, len(idx)):
                loss = task.loss(ctx.batch("val", idx[start:stop]), gen).double()
            # a batch too small to share is scored whole by every process: each adds its 1/world part
            total += loss * (stop - start if stop - start < len(idx) else len(idx) / world)
    task.train()
    return float(distributed.all_sum(total)) / n


class PretextStep(nn.Module):
    """The TPP stage's step as a module (images -> pretext loss), so that DistributedDataParallel can wrap it."""

    def __init__(self, task: nn.Module):
        super().__init__()
        self.task = task

    def forward(self, images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return self.task.loss(images, gen)


class PretextBuffers:
    """Checkpoints what a pretext task keeps outside its parameters (an EMA teacher, DINO's centre)."""

    def __init__(self, task: nn.Module, backbone: nn.Module):
        shared = {id(b) for b in backbone.buffers()}
        self.buffers = {n: b for n, b in task.named_buffers() if id(b) not in shared}

    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict]:
        return {n: b.detach().clone() for n, b in self.buffers.items()}, {}

    def load_state_dict(self, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        with torch.no_grad():
            for n, b in self.buffers.items():
                b.copy_(tensors[n])


def head_warmup(ctx: Context, run: RunModel, task: nn.Module, cfg: PretextConfig, seed: int, out_dir: Path,
                tag: str) -> dict:
    """``pretext.head_warmup_epochs``: train the pretext head alone (target parameters frozen) before the stage.

    A fresh decoder or projection head first learns to read the backbone as it is, so that the TPP stage proper
    does not push the target parameters to serve a random head. An EMA teacher follows the head as in the stage
    proper (``task.after_step``), so that DINO's stage does not start from a teacher with the random head.
    Checkpointed and resumed as its own stage.
    """
    groups = task.head_param_groups(cfg.lr)
    if not any(p.requires_grad for g in groups for p in g["params"]):  # preflight says so before any output
        raise ConfigError(f"pretext.head_warmup_epochs: the {cfg.method} task has no head to train here")
    head = [p for g in groups for p in g["params"]]
    ckpts = stage_checkpointer(ctx, out_dir, "pretext_head", seed)
    resumed = resume_stage(ckpts)
    buffers = PretextBuffers(task, run.vit)
    if resumed is not None and resumed.done:
        copy_into(head, [resumed.tensors[f"head.{i}"] for i in range(len(head))])
        if saved := unprefixed("buffer.", resumed.tensors):  # a teacher and centre as the warm-up left them
            buffers.load_state_dict(saved, {})
        ctx.log(f"{tag} pretext head warm-up already done ({resumed.path})")
        return ckpts.meta["summary"]
    targets = run.target_params()
    for p in targets:
        p.requires_grad_(False)
    gen = generator(seed, "head_warmup", ctx.device)
    view_gen = None if task.own_views else gen
    step = distributed.wrap_ddp(PretextStep(task))
    try:
        result = train(groups, lambda idx: step(ctx.pretext_batch(idx, view_gen), gen), ctx.num_pretext_images(),
                       epochs=cfg.head_warmup_epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                       weight_decay=cfg.weight_decay, warmup_epochs=min(cfg.warmup_epochs, cfg.head_warmup_epochs),
                       generator=generator(seed, "head_warmup"), after_step=task.after_step, log=ctx.log,
                       tag=f"{tag} pretext head warm-up", generators={"augment": gen}, checkpoints=ckpts,
                       resume=resumed,
                       extra=buffers, on_nonfinite=ctx.cfg.train.on_nonfinite, precision=ctx.precision)
    finally:
        for p in targets:
            p.requires_grad_(True)
    loss = pretext_eval_loss(ctx, task, seed)
    ctx.log(f"{tag} pretext head warm-up done: held-out pretext loss {loss:.5f} ({result.seconds:.0f}s)")
    summary = {"epochs": cfg.head_warmup_epochs, "loss_end": loss, "seconds": result.seconds,
               "train_loss_curve": [h["train_loss"] for h in result.history]}
    ckpts.meta["summary"] = summary
    ckpts.save({**prefixed("head.", {str(i): p for i, p in enumerate(head)}),
                **prefixed("buffer.", buffers.state_dict()[0])}, {}, done=True)
    return summary


def gain_warning(loss_start: float, loss_end: float, moving_target: bool = False) -> str | None:
    """What to warn about when the TPP stage did not lower the held-out pretext loss by ``MIN_PRETEXT_GAIN``;
    for a task whose target moves during the stage (``moving_target``), that the loss cannot tell."""
    if moving_target and not loss_end < loss_start * (1 - MIN_PRETEXT_GAIN) and not math.isnan(loss_end):
        return (f"the held-out pretext loss did not fall ({loss_start:.4f} -> {loss_end:.4f}), but this task "
                "compares the student with a teacher that moved during the stage, so the two values are measured "
                "against different targets and their difference says little; the linear probe (pretext.probe) "
                "tells whether the features improved")
    if not loss_end < loss_start:  # risen, unchanged or not a number
        return (f"the TPP stage did not lower the held-out pretext loss ({loss_start:.4f} -> {loss_end:.4f}): it has "
                "pre-trained nothing the pretext task can measure")
    if loss_end >= loss_start * (1 - MIN_PRETEXT_GAIN):
        return (f"the TPP stage lowered the held-out pretext loss by less than {MIN_PRETEXT_GAIN:.0%} "
                f"({loss_start:.4f} -> {loss_end:.4f}): it has barely pre-trained anything")
    return None


def pretrain_stage(ctx: Context, run: RunModel, seed: int, out_dir: Path, tag: str,
                   pretext: PretextConfig | None = None) -> dict:
    """TPP: train the target parameters with the pretext objective (``pretext``, default the config's); save
    them; drop the pretext head. Resumes from the stage's last good checkpoint in ``out_dir`` when there is one.
    """
    cfg = ctx.stage_config(pretext)  # lengths given in steps, in epochs of this run's images
    ckpts = stage_checkpointer(ctx, out_dir, "pretext", seed)
    resumed = resume_stage(ckpts)
    if resumed is not None and resumed.done:
        run.load_targets(unprefixed("target.", resumed.tensors))
        ctx.log(f"{tag} TPP stage already done ({resumed.path})")
        return ckpts.meta["summary"]
    task = get_pretext(cfg)(ctx.backbone, run.vit, cfg).to(ctx.device)
    if ctx.cfg.train.compile:
        compile_blocks(task)
    probing = cfg.probe and ctx.single_label and probe_possible(ctx, seed)
    # where the target parameters started (after a resume: the same seeded init, made again)
    init = {n: t.detach().clone() for n, t in
            (run if resumed is None else build_run_model(ctx, seed)).target_tensors().items()}
    if resumed is None:
        first = next(iterate_batches(ctx.num_images("val"), ctx.cfg.eval_batch_size), None)
        foreseen = None if first is None else task.start_warning(ctx.batch("val", first))
        if foreseen:
            ctx.log(f"{tag} WARNING: {foreseen}")
        ckpts.meta["loss_start"] = pretext_eval_loss(ctx, task, seed)
        if probing:
            ckpts.meta["probe_before"] = probe_targets(ctx, run, seed)
    loss_start = ckpts.meta["loss_start"]
    n = ctx.num_pretext_images()
    per_epoch = epoch_steps(n, cfg.batch_size)[0]
    asked = "" if cfg.steps is None else f", pretext.steps {cfg.steps:,} rounded up to whole epochs"
    ctx.log(f"{tag} TPP stage: {task.describe()}, {cfg.epochs} epoch{'s' * (cfg.epochs != 1)} over {n:,} images "
            f"({cfg.epochs * per_epoch:,} steps of {cfg.batch_size}{asked}; "
            f"{cfg.epochs * n:,} image-passes), held-out pretext loss {loss_start:.4f}")
    metrics_path = RunPaths(out_dir).metrics
    warmup = head_warmup(ctx, run, task, cfg, seed, out_dir, tag) if cfg.head_warmup_epochs else None
    order = generator(seed, "pretext")
    aug = generator(seed, "pretext", ctx.device)

    def on_epoch_end(epoch: int, loss: float) -> dict:
        if distributed.is_main():
            line = {"stage": "pretext", "epoch": epoch, "train_loss": loss}
            append_jsonl(metrics_path, line)
            track_epoch(ctx.cfg.log, out_dir, line, scheduled_lr(cfg.lr, cfg.epochs, cfg.batch_size,
                                                                 cfg.warmup_epochs, ctx.num_pretext_images(), epoch))
        return {}

    view_gen = None if task.own_views else aug  # a task that makes its own views gets plain images
    task.begin_stage(per_epoch, cfg.epochs * per_epoch)
    step = distributed.wrap_ddp(PretextStep(task))

    result = train(
        run.target_params() + task.head_param_groups(cfg.lr),
        lambda idx: step(ctx.pretext_batch(idx, view_gen), aug),
        ctx.num_pretext_images(), epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
        weight_decay=cfg.weight_decay, warmup_epochs=cfg.warmup_epochs, generator=order,
        on_epoch_end=on_epoch_end, after_step=task.after_step, log=ctx.log, tag=f"{tag} pretext",
        generators={"augment": aug}, checkpoints=ckpts, resume=resumed, extra=PretextBuffers(task, run.vit),
        on_nonfinite=ctx.cfg.train.on_nonfinite, precision=ctx.precision,
    )
    loss_end = pretext_eval_loss(ctx, task, seed)
    warning = task.collapse_warning(loss_end) or gain_warning(loss_start, loss_end, task.moving_target)
    if warning:
        ctx.log(f"{tag} WARNING: {warning}")
    target_dir = RunPaths(out_dir).target_params
    if distributed.is_main():
        run.method.save(run.handle, target_dir, {
            "made by": f"the TPP stage: `{cfg.method}` pretext task ({task.describe()}), {cfg.epochs} epochs on "
                       f"{ctx.num_pretext_images():,} unlabelled images of {ctx.data.name}, seed {seed}",
            "held-out pretext loss": f"{loss_start:.4f} -> {loss_end:.4f}"})
    ctx.log(f"{tag} TPP stage done: held-out pretext loss {loss_start:.5f} -> {loss_end:.5f} "
            f"({result.seconds:.0f}s); target parameters in {target_dir}")
    summary = {"method": cfg.method, "setup": task.describe(), "decoder": getattr(task, "decoder_source", None),
               "head": task.head_source,  # where the pretext head came from (a checkpoint's own, or fresh)
               "loss_start": loss_start, "loss_end": loss_end,
               "train_loss_curve": [h["train_loss"] for h in result.history],
               "epochs": cfg.epochs, "steps": result.steps, "skipped_steps": result.skipped_steps,
               "seconds": result.seconds, "images": ctx.num_pretext_images(),
               "images_sha256": ctx.stage_images_sha256}  # what pretext.stage_from checks
    if warning:
        summary["warning"] = warning  # the report lists it under "Problems"
    if warmup is not None:
        summary["head_warmup"] = warmup
    if probing:
        summary["probe_before"] = ckpts.meta["probe_before"]
        summary["probe_after"] = probe_targets(ctx, run, seed)
        ctx.log(f"{tag} {probe_change_text(summary['probe_before'], summary['probe_after'])}")
    summary["movement"] = target_movement(run, init)
    if distributed.is_main():
        append_jsonl(metrics_path, {"stage": "pretext", "event": "end", **summary})
    ckpts.meta["summary"] = summary
    ckpts.save(prefixed("target.", run.target_tensors()), {}, done=True)
    kill_point("tpp-stage-done", f"{tag} TPP stage's last checkpoint written, fine-tuning not started")
    return summary  # the pretext head goes out of scope here; only the target parameters remain

