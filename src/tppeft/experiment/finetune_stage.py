"""The fine-tuning stage: target parameters (or the arm's trainable set) and the task's new head are trained on
the labels; the best validation epoch is tested. Uses :func:`tppeft.engine.train`, like the TPP stage."""

from __future__ import annotations

from pathlib import Path

import torch

from tppeft import distributed
from tppeft.engine import train
from tppeft.engine.checkpoint import prefixed, unprefixed
from tppeft.engine.devices import compile_blocks
from tppeft.engine.loop import NonFiniteLossError
from tppeft.engine.selection import BestSoFar
from tppeft.experiment.checkpoints import resume_stage, stage_checkpointer
from tppeft.experiment.context import Context
from tppeft.experiment.model import RunModel
from tppeft.experiment.seeds import generator, stream_seed
from tppeft.io import append_jsonl, save_tensors
from tppeft.reporting.report import class_metric
from tppeft.rundir import RunPaths
from tppeft.tasks import TaskModel
from tppeft.tracking import scheduled_lr, track_epoch


def finetune_stage(ctx: Context, run: RunModel, seed: int, out_dir: Path, tag: str,
                   epochs: int | None = None) -> dict:
    """Fine-tune target parameters + the task's new head; pick the best validation epoch; test it.

    Resumes from the stage's last good checkpoint in ``out_dir`` when there is one.
    """
    cfg = ctx.cfg.finetune
    task = ctx.task
    epochs = epochs or cfg.epochs
    select = task.select_metric()
    ckpts = stage_checkpointer(ctx, out_dir, "finetune", seed)
    resumed = resume_stage(ckpts)
    if resumed is not None and resumed.done:
        run.load_targets(unprefixed("target.", resumed.tensors))
        ctx.log(f"{tag} fine-tuning already done ({resumed.path})")
        return ckpts.meta["record"]
    torch.manual_seed(stream_seed(seed, "head"))
    model: TaskModel = task.build_model(run.vit).to(ctx.device)
    model.train()
    if ctx.cfg.train.compile:
        compile_blocks(model)
    forward = distributed.wrap_ddp(model)
    order = generator(seed, "finetune")
    aug = generator(seed, "finetune", ctx.device)
    targets, head = run.target_params(), list(model.head.parameters())
    groups = [{"params": head}]
    if targets:  # a linear probe has none
        groups.insert(0, {"params": targets, "lr": cfg.lr * run.lr_scale})
    sign = -1.0 if select == "loss" else 1.0
    best = BestSoFar(targets + head)
    metrics_path = RunPaths(out_dir).metrics
    labelled = ctx.labelled(seed)  # data.label_fraction / labels_per_class: this seed's labelled subset
    num_items = ctx.num_labelled(seed)  # its size: whole volumes drawn per seed differ in slices

    def on_epoch_end(epoch: int, loss: float) -> dict:
        with ctx.inference():
            val = task.evaluate(ctx, model, "val")
        best.update(sign * val[select], epoch, val)
        if distributed.is_main():
            line = {"stage": "finetune", "epoch": epoch, "train_loss": loss, "val": val}
            append_jsonl(metrics_path, line)
            track_epoch(ctx.cfg.log, out_dir, line, scheduled_lr(cfg.lr, epochs, cfg.batch_size, cfg.warmup_epochs,
                                                                 num_items, epoch))
        # The log line and the loop's history keep the whole split's metrics: with 14 labels each label's AUC
        # would make a line of 20; metrics.jsonl (above) keeps them all.
        return {f"val_{k}": v for k, v in val.items() if class_metric(k) is None}

    def step_loss(idx: torch.Tensor) -> torch.Tensor:
        inputs, targets = task.train_batch(ctx, idx if labelled is None else labelled[idx], aug)
        return task.loss(forward(inputs), targets)

    result = train(
        groups, step_loss, num_items, epochs=epochs, batch_size=cfg.batch_size, lr=cfg.lr,
        weight_decay=cfg.weight_decay, warmup_epochs=cfg.warmup_epochs, generator=order,
        on_epoch_end=on_epoch_end, log=ctx.log, tag=f"{tag} finetune", generators={"augment": aug},
        checkpoints=ckpts, resume=resumed, extra=best, on_nonfinite=ctx.cfg.train.on_nonfinite,
        precision=ctx.precision,
    )
    if best.epoch is None:
        raise NonFiniteLossError(f"{tag}: no epoch gave a finite validation {select}")
    best.restore()
    with ctx.inference():
        test = task.evaluate(ctx, model, "test")
    # parts of the test split (without a near-twin in training, unseen by the backbone), where it has both kinds
    parts = {part: task.test_metrics_of(keep) for part, keep in ctx.test_parts().items()}
    final_dir = RunPaths(out_dir).finetuned
    if distributed.is_main():
        with ctx.inference():
            task.after_test(ctx, model, out_dir, seed)
        final_dir.mkdir(parents=True, exist_ok=True)
        if run.method is not None:  # a linear probe has no target parameters; full fine-tuning keeps no weights
            run.method.save(run.handle, final_dir, {
                "made by": f"fine-tuning on {num_items:,} labelled images of {ctx.data.name}, best of "
                           f"{epochs} epochs on validation {select}, seed {seed}",
                "test": ", ".join(f"{k} {v:.4f}" for k, v in test.items())})
        save_tensors({k: v.detach().cpu().contiguous() for k, v in model.head.state_dict().items()},
                     RunPaths(out_dir).head)
    record = {"stage": "finetune", "event": "end", "best_epoch": best.epoch, "val": best.val,
              "test": test, "epochs": epochs, "steps": result.steps, "skipped_steps": result.skipped_steps,
              "seconds": result.seconds, **{part: metrics for part, metrics in parts.items() if metrics}}
    if distributed.is_main():
        append_jsonl(metrics_path, record)
    ckpts.meta["record"] = record
    ckpts.save({**prefixed("target.", run.target_tensors()), **prefixed("head.", model.head.state_dict())}, {},
               done=True)
    ctx.log(f"{tag} test " + " ".join(f"{k} {v:.4f}" for k, v in test.items())
            + f" (best val epoch {best.epoch}, {result.seconds:.0f}s)")
    return record

