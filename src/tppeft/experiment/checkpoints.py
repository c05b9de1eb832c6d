"""Where the checkpoints of a stage of one run live, and how a stage resumes from them."""

from __future__ import annotations

from pathlib import Path

from tppeft import distributed
from tppeft.engine.checkpoint import Checkpoint, Checkpointer, config_match
from tppeft.experiment.context import Context
from tppeft.rundir import RunPaths


def stage_checkpointer(ctx: Context, out_dir: Path, stage: str, seed: int) -> Checkpointer:
    """The checkpoints of one stage of one run, in ``out_dir/checkpoints/<stage>``."""
    c = ctx.cfg.checkpoint
    paths = RunPaths(out_dir)
    return Checkpointer(paths.checkpoints(stage), **config_match(ctx.cfg, stage, seed),
                        every_epochs=c.every_epochs, every_steps=c.every_steps, logs=[paths.metrics],
                        log=ctx.log, writes=distributed.is_main())


def resume_stage(ckpts: Checkpointer) -> Checkpoint | None:
    """The stage's last good checkpoint (or None); every process has read it before any writes a new one."""
    resumed = ckpts.resume()
    distributed.barrier()
    return resumed

