"""``pretext.stage_from``: a TPP stage made before, by ``tppeft pretrain`` or by another comparison
(``runs/<arm>/stage``), serves this comparison's TPP runs instead of a stage made here. It is checked before any
output exists (everything a stage reads must equal this config's, the training images by their checksum), then
imported once into this comparison's ``runs/<arm>/stage``, its linear probe made again on this comparison's labels,
and read like a stage made here."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tppeft import distributed
from tppeft.arms import get_arm
from tppeft.config import Config, PretextConfig, load_config
from tppeft.engine.checkpoint import CheckpointError, prefixed, read_checkpoint
from tppeft.engine.config import results_identity
from tppeft.experiment.checkpoints import stage_checkpointer
from tppeft.experiment.context import Context
from tppeft.experiment.diagnostics import probe_change_text, probe_possible, probe_targets, target_movement
from tppeft.experiment.model import RunModel
from tppeft.io import append_jsonl
from tppeft.options import ConfigError
from tppeft.rundir import STAGE_FOLDER, RunFolder, RunPaths

# What a TPP stage does not read: which arms and seeds run, fine-tuning and the baselines' options, the labels and
# their draw (the stage sees every training image, unlabelled), the stage's own linear probe (made again on import)
# and where it came from.
NOT_READ = ("arms", "finetune", "baseline_matched", "eva", "full_finetune", "backbone_pretrain",
            "data.label_fraction", "data.labels_per_class", "data.merge_classes", "pretext.probe",
            "pretext.stage_from", "pretext.stage_seed")
# Where the images come from and which of them are the training split: a stage that records the checksum of the
# images it trained on (``images_sha256``) is matched by that checksum instead, after the data is read, so it serves
# another labelling or another copy of the same images and is refused for other images under the same path.
WHERE_IMAGES = ("data.path", "data.limit", "data.split", "data.cache", "data.cache_dir")
_DIAGNOSTICS = ("probe_before", "probe_after", "movement", "shared")  # made again for this comparison


@dataclass(frozen=True)
class StageSource:
    """A finished TPP stage: the config and seed that made it, the arm whose pretext task it ran, its target
    parameters and its summary (losses, curve, length, seconds)."""

    folder: Path
    config: Config
    seed: int
    arm: str
    target_params: Path
    summary: dict


def find_stage(path: str | Path) -> StageSource:
    """The stage in ``path``: a ``tppeft pretrain`` output folder, or a comparison's ``runs/<arm>/stage``."""
    folder = Path(path)
    if not folder.is_dir():
        raise ConfigError(f"pretext.stage_from: '{path}' is not a folder")
    own = RunFolder(folder).own_run
    if own.pretext_record.is_file():  # tppeft pretrain
        record = json.loads(own.pretext_record.read_text())
        summary = {k: v for k, v in record.items() if k not in ("seed", "target_params", "backbone_params",
                                                                "target_percent")}
        return _checked(StageSource(folder, load_config(RunFolder(folder).config), record["seed"], "tpp",
                                    own.target_params, summary))
    comparison = RunFolder(folder.parents[2]) if folder.name == STAGE_FOLDER and len(folder.parents) > 2 else None
    if comparison is None or not comparison.is_tppeft():
        raise ConfigError(f"pretext.stage_from: '{path}' is neither a `tppeft pretrain` folder (with "
                          f"{own.pretext_record.name}) nor a comparison's runs/<arm>/{STAGE_FOLDER} folder")
    cfg = load_config(comparison.config)
    checkpoints = sorted(own.checkpoints("pretext").glob("ckpt-*.safetensors"))
    try:
        meta = read_checkpoint(checkpoints[-1]).meta if checkpoints else {}
    except CheckpointError as e:
        raise ConfigError(f"pretext.stage_from: {e}") from None
    if not meta.get("done"):
        raise ConfigError(f"pretext.stage_from: the stage in '{path}' has not finished; finish it with tppeft run "
                          f"--resume {comparison.root}")
    return _checked(StageSource(folder, cfg, cfg.pretext.stage_seed, folder.parent.name, own.target_params,
                                meta["stage"]["summary"]))


def _checked(source: StageSource) -> StageSource:
    if not source.target_params.is_dir():
        raise ConfigError(f"pretext.stage_from: '{source.folder}' holds no target parameters "
                          f"({source.target_params.name}/)")
    return source


def stage_identity(cfg: Config, pretext: PretextConfig, by_images: bool = False) -> dict:
    """Everything a TPP stage with ``pretext`` reads of ``cfg`` (:data:`NOT_READ` left out; with ``by_images``
    also :data:`WHERE_IMAGES`, which the images' checksum stands for)."""
    leave_out = NOT_READ + (WHERE_IMAGES if by_images else ())
    return results_identity(cfg.model_copy(update={"pretext": pretext}), leave_out=leave_out)


def _differences(mine: dict, theirs: dict, where: str = "") -> list[str]:
    keys = sorted(set(mine) | set(theirs))
    out = []
    for k in keys:
        a, b = mine.get(k), theirs.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{where}{k}.")
        elif a != b:
            out.append(f"{where}{k}: {a!r} here, {b!r} there")
    return out


def check_stage_source(cfg: Config, arms: list[str]) -> StageSource:
    """Refuse ``pretext.stage_from`` unless the stage is what this config's TPP arms would make: the same seed
    (``pretext.stage_seed``) and everything the stage reads the same."""
    source = find_stage(cfg.pretext.stage_from)
    staged = [a for a in arms if get_arm(a).has_tpp_stage]
    if len(staged) != 1:
        raise ConfigError(f"pretext.stage_from: one stage serves one TPP arm; this comparison has {staged or 'none'}")
    if cfg.pretext.stage_seed != source.seed:
        raise ConfigError(f"pretext.stage_from: the stage in '{source.folder}' was made with seed {source.seed}; set "
                          f"pretext.stage_seed: {source.seed} (every seed's run fine-tunes from that one stage)")
    arm = get_arm(staged[0])
    by_images = "images_sha256" in source.summary  # else (made before stages recorded it) by path and split
    mine = stage_identity(cfg, arm.pretext(staged[0], cfg.pretext), by_images)
    theirs = stage_identity(source.config, get_arm(source.arm).pretext(source.arm, source.config.pretext), by_images)
    if differences := _differences(mine, theirs):
        where = not by_images and any(d.startswith(WHERE_IMAGES) for d in differences)
        raise ConfigError(f"pretext.stage_from: the stage in '{source.folder}' was made with another setting of what "
                          f"a stage reads: {'; '.join(differences)}"
                          + (" (the stage predates the record of its images' checksum, so its data is matched by "
                             "path, limit and split)" if where else ""))
    return source


def check_stage_images(ctx: Context) -> StageSource:
    """The stage of ``pretext.stage_from``, refused when it trained on other images than this comparison's TPP stage
    would (its recorded ``images_sha256``; a stage made before that record was matched by path in
    :func:`check_stage_source`)."""
    source = find_stage(ctx.cfg.pretext.stage_from)
    theirs = source.summary.get("images_sha256")
    if theirs is not None and theirs != ctx.stage_images_sha256:
        raise ConfigError(f"pretext.stage_from: the stage in '{source.folder}' was trained on other images than "
                          f"this comparison's stage would be ({ctx.num_pretext_images():,} training and "
                          f"`pretext.data` images here, {source.summary.get('images')} there; their SHA-256 "
                          "differs: another file, split, data.limit or pretext.data, or a data file replaced "
                          "since): leave pretext.stage_from out to make the stage here")
    return source


def import_stage(ctx: Context, run: RunModel, seed: int, out_dir: Path, tag: str, pretext: PretextConfig) -> dict:
    """Make this comparison's stage in ``out_dir`` from ``pretext.stage_from``: ``run`` (the stage seed's init)
    takes the stage's target parameters; the probe and the movement are measured here, on this comparison's
    labels; a finished stage checkpoint and the target parameters are written as a stage made here would be."""
    source = check_stage_images(ctx)  # again: a resumed comparison imports the stage long after its first checks
    init = {n: t.detach().clone() for n, t in run.target_tensors().items()}
    probing = pretext.probe and ctx.single_label and probe_possible(ctx, seed)
    summary = {k: v for k, v in source.summary.items() if k not in _DIAGNOSTICS}
    summary["from"] = str(source.folder)
    if probing:
        summary["probe_before"] = probe_targets(ctx, run, seed)
    run.method.load(run.handle, source.target_params)
    if probing:
        summary["probe_after"] = probe_targets(ctx, run, seed)
        ctx.log(f"{tag} {probe_change_text(summary['probe_before'], summary['probe_after'])}")
    summary["movement"] = target_movement(run, init)
    paths = RunPaths(out_dir)
    if distributed.is_main():
        run.method.save(run.handle, paths.target_params, {
            "made by": f"the TPP stage in {source.folder} (`pretext.stage_from`), seed {seed}",
            "held-out pretext loss": f"{summary['loss_start']:.4f} -> {summary['loss_end']:.4f}"})
        append_jsonl(paths.metrics, {"stage": "pretext", "event": "end", **summary})
    ckpts = stage_checkpointer(ctx, out_dir, "pretext", seed)
    ckpts.meta["summary"] = summary
    ckpts.save(prefixed("target.", run.target_tensors()), {}, done=True)
    ctx.log(f"{tag} TPP stage taken from {source.folder} (pretext.stage_from): held-out pretext loss "
            f"{summary['loss_start']:.5f} -> {summary['loss_end']:.5f} there")
    return summary
