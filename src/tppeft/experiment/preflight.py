"""A check before any output exists: one run's model, task head and pretext task are built as the runs will
build them, so that a method, head, pretext task or init folder that cannot work fails early."""

from __future__ import annotations

from pathlib import Path

from tppeft import distributed
from tppeft.experiment.context import Context
from tppeft.experiment.model import build_run_model
from tppeft.options import ConfigError
from tppeft.pretext import get_pretext


def preflight(ctx: Context, pretext: bool, init: Path | None = None) -> int:
    """Build one run's model, task head (and pretext task) as the runs will, so that a method, head, pretext
    task or init folder that cannot work fails before any output exists. Returns the trainable parameter count."""
    run = build_run_model(ctx, 0, init)
    count = sum(p.numel() for p in run.target_params())
    count += sum(p.numel() for p in ctx.task.build_model(run.vit).head.parameters())
    if pretext:
        task = get_pretext(ctx.cfg.pretext)(ctx.backbone, run.vit, ctx.cfg.pretext)
        head = [p for g in task.head_param_groups(1.0) for p in g["params"] if p.requires_grad]
        count += sum(p.numel() for p in head)
        if ctx.cfg.pretext.head_warmup_epochs and not head:
            raise ConfigError(f"pretext.head_warmup_epochs: the {task.name} task has no head to train here "
                              f"({task.describe()}); set it to 0, or use a fresh head (e.g. pretext.decoder=fresh)")
        if task.batch_coupled and distributed.world_size() > 1:
            raise ConfigError(f"pretext.method '{task.name}' computes its loss over the whole batch (negatives, "
                              "centring), which a batch shared between processes would change; run it in one "
                              "process per job (see the docs, \"Speed and scale\": tppeft run --only and tppeft merge)")
    return count

