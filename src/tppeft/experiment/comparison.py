"""The comparison: every arm runs every seed with the same data, budget and evaluation, into one run folder.

Arms are those of the registry (:mod:`tppeft.arms`). A seed fixes target-parameter init, head init, data order
and augmentation identically in every arm, so arms are compared seed by seed (paired).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import tppeft
from tppeft import distributed
from tppeft.arms import get_arm
from tppeft.backbones import seen_by_name, seen_splits
from tppeft.bundled import resolve
from tppeft.config import Config, load_config
from tppeft.data.overlap import (
    MAX_PAIRS,
    NEAR,
    copies_across,
    count_in,
    near_copies_across,
)
from tppeft.engine import arithmetic
from tppeft.engine.loop import NonFiniteLossError
from tppeft.engine.signals import RunInterrupted, check_stop, stop_requested
from tppeft.experiment.budget import matched_budget
from tppeft.experiment.builders import build_arm_model
from tppeft.experiment.context import TEST_PARTS, Context, prepare_context
from tppeft.experiment.finetune_stage import finetune_stage
from tppeft.experiment.model import backbone_unchanged
from tppeft.experiment.pretext_stage import pretrain_stage
from tppeft.experiment.shared_stage import shared_stage
from tppeft.faults import kill_point
from tppeft.io import append_jsonl, read_jsonl, tensors_sha256, write_json
from tppeft.reporting.budget import extra_epochs_text
from tppeft.reporting.report import (
    any_seen,
    copies_between_splits,
    seen_images_text,
    split_copies_text,
    write_report,
)
from tppeft.reporting.stats import bootstrap_ci, finite, mean_std, paired_difference
from tppeft.revision import source_revision
from tppeft.rundir import RunFolder


def run_seconds(wall: float, finetune: dict, pretext: dict | None) -> float:
    """A run's seconds: its wall time in this process, or, when it resumed from a checkpoint, at least the seconds
    of its stages, which count across resumes (warm-up, TPP stage, fine-tuning). A shared TPP stage counts in the
    run that made it only."""
    stages = finetune["seconds"]
    if pretext is not None and (pretext.get("shared") or {}).get("made_by_this_run", True):
        stages += pretext["seconds"] + (pretext.get("head_warmup") or {}).get("seconds", 0.0)
    return max(wall, stages)


def run_arm(ctx: Context, arm: str, seed: int, run_dir: Path, budget: dict | None = None) -> dict:
    """One arm, one seed: [TPP stage] + fine-tuning; returns the run's record.

    ``budget`` (from :func:`tppeft.experiment.budget.matched_budget`) gives an arm that needs it (``baseline_matched``)
    its extra epochs.
    """
    start = time.perf_counter()
    if distributed.is_main():
        run_dir.mkdir(parents=True, exist_ok=True)
    tag = f"[{arm} seed {seed}]"
    spec = get_arm(arm)
    run, init_info = build_arm_model(ctx, spec, seed)
    counts = run.counts()
    ctx.log(f"{tag} {run.counts_text()}")
    pretext_cfg = spec.pretext_config(ctx.cfg.pretext)
    pretext = None
    if pretext_cfg is not None and ctx.cfg.pretext.stage_seed is not None:
        pretext = shared_stage(ctx, spec, run, run_dir, tag, pretext_cfg)
    elif pretext_cfg is not None:
        pretext = pretrain_stage(ctx, run, seed, run_dir, tag, pretext_cfg)
    epochs = spec.finetune_epochs(ctx.cfg.finetune.epochs, budget, seed)
    ft = finetune_stage(ctx, run, seed, run_dir, tag, epochs=epochs)
    unchanged = backbone_unchanged(ctx, run, tag)
    skipped = ft.get("skipped_steps", 0) + (pretext or {}).get("skipped_steps", 0)
    record = {"arm": arm, "seed": seed, "status": "ok", "test": ft["test"], "val": ft["val"],
              **{part: ft[part] for part in TEST_PARTS if part in ft},
              "best_epoch": ft["best_epoch"], "finetune_epochs": epochs,
              "seconds": round(run_seconds(time.perf_counter() - start, ft, pretext), 2),
              "finetune_seconds": round(ft["seconds"], 2), "pretext": pretext, "skipped_steps": skipped,
              "backbone_unchanged": unchanged, "arithmetic": arithmetic(ctx.device), "revision": source_revision(),
              **init_info, **counts}
    return record


def failed_record(arm: str, seed: int, error: Exception) -> dict:
    """The results line of a run stopped by a non-finite loss: no metrics, the reason instead."""
    return {"arm": arm, "seed": seed, "status": "failed", "error": str(error), "test": {}, "val": {},
            "best_epoch": None, "pretext": None}


def is_valid(record: dict) -> bool:
    return record.get("status", "ok") == "ok"


def _by_seed(runs: list[dict], metric: str, split: str = "test") -> dict[int, float]:
    return {r["seed"]: v for r in runs if (v := (r.get(split) or {}).get(metric)) is not None and math.isfinite(v)}


def _undefined_difference(reason: str) -> dict:
    """The paired difference of a metric no run could define: no numbers, the reason instead."""
    return {"mean": None, "std": None, "ci95": [None, None], "wins": 0, "ties": 0, "losses": 0, "n": 0,
            "sign_test_p": None, "per_seed": {}, "undefined": reason}


def _runs_by(records: list[dict], key: str) -> list[tuple]:
    """The distinct values of each run record's ``key``, each with its runs (``arm:seed``), in the order the runs
    first used them; runs without the key (recorded by older versions) are left out."""
    kinds: list[tuple] = []
    for r in records:
        if made := r.get(key):
            runs = next((runs for kind, runs in kinds if kind == made), None)
            if runs is None:
                kinds.append((made, runs := []))
            runs.append(f"{r['arm']}:{r['seed']}")
    return kinds


def machines(records: list[dict]) -> list[dict]:
    """The kinds of arithmetic (:func:`tppeft.engine.arithmetic`: processor or GPU, torch) the runs were made
    with, each with its runs. Runs of one kind are bit-for-bit repeatable; across kinds they agree up to float
    rounding."""
    return [{**kind, "runs": runs} for kind, runs in _runs_by(records, "arithmetic")]


def revisions(records: list[dict]) -> list[dict]:
    """The source revisions (:func:`tppeft.revision.source_revision`) the runs were made with, each with its runs;
    empty when no run was made from a git checkout."""
    return [{"commit": commit, "runs": runs} for commit, runs in _runs_by(records, "revision")]


def summarize(records: list[dict], cfg: Config, meta: dict, metrics: list[str], primary: str) -> dict:
    """summary.json: per-arm runs, mean, std and 95% bootstrap CI of each of the task's ``metrics``, and paired
    tpp-minus-other differences; ``primary`` names the task's primary metric. Failed runs and non-finite metrics
    are left out of every statistic and listed (``failed``, ``nonfinite``); runs with skipped updates are listed
    too. A metric that no run could define (``meta["undefined_metrics"]`` gives the task's reasons, e.g. AUC of a
    one-class test split) has no statistics at all (null), and ``undefined_metrics`` names it with its reason."""
    undefined = dict(meta.get("undefined_metrics") or {})
    valid = [r for r in records if is_valid(r)]
    for m in metrics:
        if valid and m not in undefined and not finite([r["test"].get(m) for r in valid]):
            undefined[m] = f"no run gave a finite test {m.upper()}"
    arms: dict[str, dict] = {}
    for arm in cfg.arms:
        runs = [r for r in records if r["arm"] == arm and is_valid(r)]
        entry: dict = {"runs": runs, "mean": {}, "std": {}, "ci95": {}, "n": len(runs)}
        failed = [{"seed": r["seed"], "error": r.get("error")} for r in records if r["arm"] == arm and not is_valid(r)]
        if failed:
            entry["failed"] = failed  # left out of every statistic
        for m in metrics:
            values = [r["test"].get(m) for r in runs]
            kept = [] if m in undefined else finite(values)
            entry["mean"][m], entry["std"][m] = mean_std(kept) if kept else (None, None)
            entry["ci95"][m] = list(bootstrap_ci(kept)) if kept else [None, None]
            missing = [r["seed"] for r, v in zip(runs, values, strict=True) if v is None or not math.isfinite(v)]
            if missing:
                entry.setdefault("nonfinite", {})[m] = missing  # seeds left out of this metric's statistics
        skipped = {r["seed"]: r["skipped_steps"] for r in runs if r.get("skipped_steps")}
        if skipped:
            entry["skipped_steps"] = skipped
        pre = [r["pretext"] for r in runs if r.get("pretext")]
        if pre:
            entry["pretext_loss_start"] = mean_std([p["loss_start"] for p in pre])[0]
            entry["pretext_loss_end"] = mean_std([p["loss_end"] for p in pre])[0]
            entry["pretext_head"] = pre[0].get("head")  # where the pretext head came from
        entry["finetune_epochs"] = runs[0]["finetune_epochs"] if runs else None
        entry["seconds_mean"] = mean_std([r["seconds"] for r in runs])[0]
        for part, key in TEST_PARTS.items():
            if by_seed := _by_seed(runs, primary, part):
                entry[f"mean_{key}"] = {primary: mean_std(list(by_seed.values()))[0]}
        arms[arm] = entry
    paired: dict[str, dict] = {}
    paired_val: dict[str, dict] = {}  # the primary metric on validation: what settings are chosen on
    paired_parts: dict[str, dict[str, dict]] = {part: {} for part in TEST_PARTS}  # ... on parts of the test split
    tpp_arms = [a for a in cfg.arms if get_arm(a).has_tpp_stage]
    for tpp in tpp_arms:
        for other in cfg.arms:
            if other in tpp_arms:
                continue
            paired[f"{tpp}-{other}"] = {
                m: (_undefined_difference(undefined[m]) if m in undefined else
                    paired_difference(_by_seed(arms[tpp]["runs"], m), _by_seed(arms[other]["runs"], m)))
                for m in metrics}
            for split, table in (("val", paired_val), *paired_parts.items()):
                by_seed = [_by_seed(arms[a]["runs"], primary, split) for a in (tpp, other)]
                if all(by_seed):
                    table[f"{tpp}-{other}"] = {primary: paired_difference(*by_seed)}
    # the count of an arm that carries the method's target parameters
    first = next((r for r in valid if get_arm(r["arm"]).carries_targets), valid[0] if valid else {})
    target = {"method": cfg.peft.method, "count": first.get("target_params"),
              "backbone_params": first.get("backbone_params"), "percent": first.get("target_percent")}
    return {"tppeft_version": tppeft.__version__, "primary_metric": primary, "metrics": list(metrics),
            **meta, "arithmetic": machines(records), "revision": revisions(records), "undefined_metrics": undefined,
            "target_params": target, "arms": arms, "paired": paired, "paired_val": paired_val,
            **{f"paired_{TEST_PARTS[part]}": table for part, table in paired_parts.items() if table}}


def run_order(cfg: Config) -> list[tuple[str, int]]:
    """(arm, seed) of every run, in the order a comparison makes and records them: seed by seed, the arms in
    the config's order."""
    return [(arm, seed) for seed in range(cfg.seeds) for arm in cfg.arms]


def sort_records(records: list[dict], cfg: Config) -> list[dict]:
    """The runs' records in :func:`run_order` (runs the config does not name last)."""
    order = {run: i for i, run in enumerate(run_order(cfg))}
    return sorted(records, key=lambda r: order.get((r["arm"], r["seed"]), len(order)))


def _shared(budget: dict) -> str:
    k = budget.get("stage_shared_by", 1)
    return f", shared by {k} fine-tuning runs: {budget['tpp_stage_in_finetune_epochs'] / k:.2f} each" if k > 1 else ""


def seen_images(ctx: Context, log: Callable[[str], None]) -> dict | None:
    """Per split, [images the backbone saw in pre-training, images], pixel for pixel at its input size, from the
    keys beside it (b0's, or those ``tppeft backbone-pretrain`` wrote; :mod:`tppeft.data.overlap`); None without
    them."""
    path, made = ctx.backbone.pool_keys, ctx.backbone.identity.get("pool_keys") or {}
    if (pool := ctx.backbone_pool) is None:
        if path is not None and not path.is_file():
            log(f"note: {path} (the keys of the backbone's pre-training images) is missing, so which of this data's "
                "images the backbone saw is not checked")
        elif path is not None:
            log(f"note: the backbone's pre-training images are keyed at {made.get('image_size')} px and this run "
                f"reads its images at {ctx.backbone.image_size} px, so which of them the backbone saw is not checked")
        return None
    return {"image_size": made["image_size"], **{name: [count_in(keys, pool), len(keys)]
                                                  for name, keys in ctx.split_keys().items()}}


def near_twins(ctx: Context, log: Callable[[str], None]) -> dict | None:
    """Per pair of splits, the images of the later one with a near-twin in the earlier one
    (:func:`tppeft.data.overlap.near_copies_across`); None for volumes (exact copies only) or sets too large."""
    if (pairs := ctx.image_pairs()) is None:
        return None
    if pairs > MAX_PAIRS:
        log(f"note: near-twins between the splits are not looked for ({pairs:,} image pairs, more than {MAX_PAIRS:,})")
        return None
    near = {"min_correlation": NEAR, "counts": near_copies_across(ctx.split_thumbnails)}
    if (keep := ctx.test_without_twin) is not None:
        near["test_without_twin_in_train"] = int(keep.sum())
    return near


def comparison_meta(cfg: Config, ctx: Context, log: Callable[[str], None]) -> tuple[dict, dict | None]:
    """What summary.json says of the whole comparison (data, backbone, settings), and the matched budget of an arm
    that needs one (None: no such arm); logs what the user should know before the first run."""
    meta = {"dataset": ctx.data.name, "data_layout": ctx.data.layout, "class_names": ctx.data.class_names,
            "task": ctx.task.name, "labels": ctx.data.task,
            "num_classes": ctx.data.num_classes, "metric_note": ctx.task.metric_note(),
            "split_sizes": {k: len(v) for k, v in ctx.data.splits.items()},
            "data": {"train": ctx.num_labelled(), "pretext_train": ctx.num_pretext_images(),
                     "label_fraction": cfg.data.label_fraction, "labels_per_class": cfg.data.labels_per_class,
                     "merge_classes": cfg.data.merge_classes,
                     "pretext_sources": ctx.pretext_sources,
                     "split_sha256": {k: v.sha256() for k, v in ctx.data.splits.items()},
                     "label_sha256": {k: tensors_sha256({"labels": v.labels}) for k, v in ctx.data.splits.items()},
                     **({"labelled_volumes": v, "train_per_seed": [ctx.num_labelled(s) for s in range(cfg.seeds)]}
                        if (v := ctx.labelled_volumes()) is not None else {})},
            "backbone": ctx.backbone.identity, "backbone_provenance": ctx.backbone.provenance,
            "peft": cfg.peft.model_dump(), "pretext": cfg.pretext.model_dump(),
            "finetune": {**cfg.finetune.model_dump(), "select_metric": ctx.task.select_metric()},
            "task_config": cfg.task.model_dump(), "image_size": ctx.backbone.image_size,
            "seeds": list(range(cfg.seeds)), "device": str(ctx.device),
            "processes": distributed.world_size()}
    arms = [get_arm(a) for a in cfg.arms]
    # an arm's own options; baseline_matched's section is recorded as its budget (below), which names them
    meta.update({arm.options: getattr(cfg, arm.options).model_dump() for arm in arms
                 if arm.options and not arm.uses_budget})
    meta["data"]["split_copies"] = copies_across(ctx.split_keys())
    if (near := near_twins(ctx, log)) is not None:
        meta["data"]["split_near_copies"] = near
    if copies_between_splits(meta["data"]):
        log(f"note: {split_copies_text(meta['data']['split_copies'], meta['split_sizes'], near)}")
    meta["undefined_metrics"] = ctx.task.undefined_metrics(ctx.data, "test")
    for m, reason in meta["undefined_metrics"].items():
        log(f"note: test {m.upper()} is undefined: {reason}; it is left out of the statistics and the verdict")
    overlap = seen_splits(ctx.backbone.identity, resolve(cfg.data.path))
    images = seen_images(ctx, log)
    named = [] if overlap else seen_by_name(ctx.backbone.identity, ctx.data.name)
    if overlap:
        meta["backbone_saw_this_data"] = overlap
        log(f"note: the backbone was pre-trained on the {', '.join(overlap)} split(s) of {cfg.data.path}")
    if images:
        meta["backbone_saw_images"] = images
        log(f"note: of this data's images, the backbone's pre-training pool holds {seen_images_text(images)}, "
            f"pixel for pixel at {images['image_size']} px"
            + (f"; by name, {', '.join(named)} is this data set, so its images may be there resized or scaled "
               "otherwise" if named and not any_seen(images) else ""))
    elif named:  # the report reads it from the dataset's name and trained_on (older summaries too)
        log(f"note: the backbone's pre-training sets include {', '.join(named)}: by name, this data set")
    staged = [a.name for a in arms if a.has_tpp_stage]
    if cfg.pretext.stage_seed is not None and staged:
        log(f"pretext.stage_seed: {cfg.pretext.stage_seed}: one TPP stage per arm ({', '.join(staged)}) serves "
            f"all {cfg.seeds} seeds; the paired intervals do not include the variation between stages")
        shared_by = cfg.baseline_matched.stage_shared_by
        if any(a.uses_budget for a in arms) and shared_by == 1:
            log("note: baseline_matched is charged a whole stage per run although the stage is shared; "
                f"baseline_matched.stage_shared_by: {cfg.seeds} charges each run its share")
        elif any(a.uses_budget for a in arms) and shared_by != cfg.seeds:
            log(f"note: baseline_matched.stage_shared_by is {shared_by} and the stage serves {cfg.seeds} seeds: each "
                f"baseline_matched run is charged 1/{shared_by} of it")
    budget = None
    for arm in (a for a in arms if a.uses_budget):
        budget = budget or matched_budget(ctx)
        meta[arm.name] = budget
        ratio = budget.get("tpp_stage_in_finetune_epochs")
        extra = extra_epochs_text(arm.finetune_epochs(0, budget, seed) for seed in range(cfg.seeds))
        log(f"{arm.name}: {cfg.finetune.epochs} + {extra} fine-tuning epochs"
            + (f" (the TPP stage costs {ratio:.2f} fine-tuning epochs in counted FLOPs{_shared(budget)})"
               if ratio is not None else
               f" ({budget['rule']})"))
    return meta, budget


def run_comparison(cfg: Config, out_dir: Path, log: Callable[[str], None] = print, ctx: Context | None = None,
                   resume: bool = False, only: set[tuple[str, int]] | None = None) -> dict:
    """Run all arms x seeds into ``out_dir`` (a folder made by :meth:`tppeft.rundir.RunFolder.create`, with its
    config.yaml) and write results.jsonl, summary.json, report.md.

    With ``resume`` the runs already in ``out_dir/results.jsonl`` are kept, and an interrupted run continues
    from its last checkpoint. A run stopped by a non-finite loss is recorded as failed and left out of the
    statistics; the comparison goes on. With ``only`` just those (arm, seed) runs are made: one job's part of a
    comparison spread over several, joined afterwards by :func:`tppeft.merge.merge_parts`. Under torchrun every
    process runs the comparison (each on its share of every batch) and the first one alone writes.
    """
    main = distributed.is_main()
    start = time.perf_counter()
    folder = RunFolder(out_dir)
    results_path = folder.results
    ctx = ctx or prepare_context(cfg, log)
    meta, budget = comparison_meta(cfg, ctx, log)
    folder.check_images(meta["data"]["split_sha256"], write=main)
    records = read_jsonl(results_path, repair=True) if resume and results_path.is_file() else []
    distributed.barrier()  # every process knows the finished runs before the first one adds to them
    finished = {(r["arm"], r["seed"]) for r in records}
    kept_clean = {(r["arm"], r["seed"]) for r in records if is_valid(r)}  # a failed run keeps its checkpoints
    if records:
        log(f"resuming: {len(records)} finished run(s) kept from {results_path}")
    total = len(only) if only else cfg.seeds * len(cfg.arms)
    for arm, seed in run_order(cfg):
        run_paths = folder.run(arm, seed)
        run_dir = run_paths.root
        if only and (arm, seed) not in only:
            continue
        if (arm, seed) in finished:
            if main and not cfg.checkpoint.keep_finished and (arm, seed) in kept_clean:
                run_paths.drop_checkpoints()  # a kill came before the cleanup
            continue
        if distributed.any_process(stop_requested()):
            check_stop()
            raise RunInterrupted()  # another process was asked to stop: stop together
        log(f"== run {len(records) + 1}/{total}: arm {arm}, seed {seed} "
            f"[{time.perf_counter() - start:.0f}s elapsed]")
        try:
            record = run_arm(ctx, arm, seed, run_dir, budget)
        except NonFiniteLossError as e:
            log(f"[{arm} seed {seed}] FAILED: {e}")
            record = failed_record(arm, seed, e)
        records.append(record)
        if main:
            append_jsonl(results_path, record)
            kill_point("results-line-written", f"[{arm} seed {seed}] results line written, checkpoints not "
                       "yet deleted")
            if is_valid(record) and not cfg.checkpoint.keep_finished:
                run_paths.drop_checkpoints()
    return finish_comparison(cfg, ctx, folder, records, meta, time.perf_counter() - start, resume)


def interim_summary(folder: RunFolder, log: Callable[[str], None] = print) -> dict:
    """What summary.json would say of an unfinished comparison (running, or stopped) if it ended now: its finished
    runs only, the set-up as the run records it, ``interim`` with each arm's finished runs. Written nowhere."""
    cfg = load_config(folder.config)
    ctx = prepare_context(cfg, log)
    meta, _ = comparison_meta(cfg, ctx, log)
    records = read_jsonl(folder.results, skip_incomplete=True) if folder.results.is_file() else []
    records = sort_records([r for r in records if r["arm"] in cfg.arms and r["seed"] < cfg.seeds], cfg)
    meta["interim"] = {"by_arm": {arm: sum(r["arm"] == arm for r in records) for arm in cfg.arms}}
    return summarize(records, cfg, meta, ctx.task.metrics, ctx.task.primary_metric)


def finish_comparison(cfg: Config, ctx: Context, folder: RunFolder, records: list[dict], meta: dict,
                      seconds: float, resume: bool) -> dict:
    """Order the runs' records, draw the task's figures from the run folders and write summary.json and
    report.md (the first process only); returns the summary."""
    main = distributed.is_main()
    records = sort_records(records, cfg)
    figures = ctx.task.figures(ctx, folder.root, cfg.arms) if main else []
    extra = {"resumed": True} if resume else {}
    if added := folder.seeds_added():
        extra["seeds_added"] = added
    if redone := folder.redone():
        extra["redone"] = redone
    summary = summarize(records, cfg, {**meta, "figures": figures, "wall_seconds": round(seconds, 1), **extra},
                        ctx.task.metrics, ctx.task.primary_metric)
    if main:
        write_json(folder.summary, summary)
        write_report(folder.root)
    return summary
