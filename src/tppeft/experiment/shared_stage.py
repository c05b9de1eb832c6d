"""``pretext.stage_seed``: one TPP stage for a whole comparison, as one ``tppeft pretrain`` serves several
``tppeft finetune --init`` runs. The stage is made once, with that seed's target-parameter init and data order, in
``runs/<arm>/stage``; every seed's run of the arm fine-tunes from its target parameters."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from tppeft import distributed
from tppeft.arms import Arm
from tppeft.config import PretextConfig
from tppeft.engine.checkpoint import newest_done
from tppeft.experiment.builders import build_arm_model
from tppeft.experiment.checkpoints import resume_stage, stage_checkpointer
from tppeft.experiment.context import Context
from tppeft.experiment.model import RunModel
from tppeft.experiment.pretext_stage import pretrain_stage
from tppeft.experiment.stage_source import import_stage
from tppeft.rundir import JOBS_FOLDER_ENV, STAGE_FOLDER, RunFolder, RunPaths


def stage_folder(run_dir: Path) -> Path:
    """The shared stage's folder of the arm whose run folder is ``run_dir`` (``runs/<arm>/seed<k>``): beside it,
    or, in a worker of ``tppeft run --jobs`` (whose run folder is in a part of its own), in the comparison's
    folder, where every worker finds it."""
    jobs = os.environ.get(JOBS_FOLDER_ENV)
    arm_dir = RunFolder(Path(jobs)).runs_root / run_dir.parent.name if jobs else run_dir.parent
    return arm_dir / STAGE_FOLDER


def stage_finished(arm_dir: Path) -> bool:
    """Whether the shared stage beside ``arm_dir``'s runs is made, so that a run of the arm started now reads it at
    once instead of waiting for the run that makes it (how ``tppeft run --jobs`` chooses what to start)."""
    return newest_done(RunPaths(arm_dir / STAGE_FOLDER).checkpoints("pretext"))


@contextlib.contextmanager
def _one_maker(folder: Path) -> Iterator[None]:
    """Held while the stage is made or read, so that the jobs of ``tppeft run --jobs`` make it once: the others
    wait and then read it. Under torchrun the processes make it together, so none locks."""
    if distributed.world_size() > 1:
        yield
        return
    import fcntl  # POSIX; the comparison's other locks are POSIX too

    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def shared_stage(ctx: Context, arm: Arm, run: RunModel, run_dir: Path, tag: str, cfg: PretextConfig) -> dict:
    """Load the arm's one TPP stage into ``run``'s target parameters, making it first if no run has; returns the
    stage's summary with ``shared`` = {seed, folder, made_by_this_run}."""
    seed = ctx.cfg.pretext.stage_seed
    folder = stage_folder(run_dir)
    with _one_maker(folder):
        done = resume_stage(stage_checkpointer(ctx, folder, "pretext", seed))
        made = done is None or not done.done
        if made:
            how = "takes the TPP stage of pretext.stage_from into" if ctx.cfg.pretext.stage_from else "makes"
            ctx.log(f"{tag} {how} the shared TPP stage (pretext.stage_seed: {seed}) in {folder}")
        maker, _ = build_arm_model(ctx, arm, seed)
        stage_tag = f"[{arm.name} stage, seed {seed}]"
        if made and ctx.cfg.pretext.stage_from:  # a stage made before: imported, then read as if made here
            summary = import_stage(ctx, maker, seed, folder, stage_tag, cfg)
        else:
            summary = pretrain_stage(ctx, maker, seed, folder, stage_tag, cfg)
        if made:  # later runs read only the finished stage's last checkpoint
            for stage in ("pretext_head", "pretext"):
                stage_checkpointer(ctx, folder, stage, seed).prune(1)
    run.load_targets(maker.target_tensors())
    if not made:
        ctx.log(f"{tag} fine-tunes from the shared TPP stage of seed {seed} ({folder})")
    return {**summary, "shared": {"seed": seed, "folder": f"{arm.name}/{STAGE_FOLDER}", "made_by_this_run": made}}
