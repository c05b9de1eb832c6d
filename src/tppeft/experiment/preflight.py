"""A check before any output exists: one run's model, task head and pretext task are built as the runs will
build them, so that a method, head, pretext task or init folder that cannot work fails early; and a stage made
before (``pretext.stage_from``) is checked against the comparison's settings and images."""

from __future__ import annotations

from pathlib import Path

from tppeft import ranks
from tppeft.arms import get_arm
from tppeft.config import Config
from tppeft.experiment.context import Context
from tppeft.experiment.model import build_run_model
from tppeft.experiment.stage_source import check_stage_images
from tppeft.options import ConfigError
from tppeft.pretext import get_pretext


def preflight(ctx: Context, pretext: bool, init: Path | None = None) -> int:
    """Build one run's model, task head (and pretext task) as the runs will, so that a method, head, pretext
    task or init folder that cannot work fails before any output exists. Returns the trainable parameter count.
    (Under torchrun, :func:`check_unshared_batches` comes first, before the context joins the process group.)"""
    run = build_run_model(ctx, 0, init)
    count = sum(p.numel() for p in run.target_params())
    count += sum(p.numel() for p in ctx.task.build_model(run.vit).head.parameters())
    if pretext:
        task = get_pretext(ctx.cfg.pretext)(ctx.backbone, run.vit, ctx.cfg.pretext)
        head = [p for g in task.head_param_groups(1.0) for p in g["params"] if p.requires_grad]
        count += sum(p.numel() for p in head)
        if ctx.stage_config().head_warmup_epochs and not head:
            raise ConfigError(f"pretext.head_warmup_epochs (or head_warmup_steps): the {task.name} task has no head "
                              f"to train here ({task.describe()}); set it to 0, or use a fresh head (e.g. "
                              "pretext.decoder=fresh)")
    return count


def check_stage_from(cfg: Config, pretext: bool, arms: list[str] | None) -> None:
    """``pretext.stage_from``: the stage made before must be what this comparison's TPP arm would make;
    ``arms`` None (``tppeft pretrain``, which makes a stage) takes none."""
    if not (pretext and cfg.pretext.stage_from):
        return
    if arms is None:
        raise ConfigError("pretext.stage_from: a stage made before serves a comparison (tppeft run); tppeft "
                          "pretrain makes one: leave the key out")
    from tppeft.experiment.stage_source import check_stage_source

    check_stage_source(cfg, arms)


def check_stage_images_from(ctx: Context, pretext: bool) -> None:
    """``pretext.stage_from``, once the data is read: the stage must have trained on the images this comparison's
    TPP stage would (after :func:`check_stage_from`, which cannot see them)."""
    if pretext and ctx.cfg.pretext.stage_from:
        check_stage_images(ctx)


def check_unshared_batches(cfg: Config, pretext: bool, arms: list[str] | None) -> None:
    """Under torchrun (``WORLD_SIZE`` > 1, read before any process group is joined): refuse every pretext task
    that computes its loss over the whole batch (``batch_coupled``), naming the arms (or the stage command's
    ``pretext.method``) in one line. ``arms``: the arms that will run (their own pretext tasks are checked); None
    for a stage command, whose ``pretext.method`` is checked when ``pretext`` (a TPP stage runs)."""
    if ranks.world_size() <= 1:
        return
    if arms is None:
        stages = [("pretext.method", cfg.pretext)] if pretext else []
    else:
        stages = [(f"'{a}'", c) for a in arms if (c := get_arm(a).pretext_config(cfg.pretext)) is not None]
    coupled = [f"{what} (pretext task '{c.method}')" for what, c in stages if get_pretext(c).batch_coupled]
    if coupled:
        raise ConfigError(f"{'arms: ' if arms is not None else ''}{', '.join(coupled)}: a pretext task that computes "
                          "its loss over the whole batch (negatives, centring) cannot run under torchrun, where each "
                          "process has a share of the batch; run it in one process per job (see the docs, \"Speed "
                          "and scale\": tppeft run --only and tppeft merge)")
