"""The comparison protocol: every arm runs every seed with the same data, budget and evaluation.

Arms (see :mod:`tppeft.arms`): ``baseline``, ``tpp``, ``baseline_matched``, ``eva`` and the references
``linear_probe`` and ``full_finetune``. A seed fixes target-parameter init, head init, data order and
augmentation identically in every arm, so arms are compared seed by seed (paired).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import tppeft
from tppeft.arms import ARM_HELP, build_arm_model
from tppeft.backbones import frozen_state_digest, seen_splits
from tppeft.budget import matched_budget
from tppeft.bundled import resolve
from tppeft.config import Config, config_to_yaml
from tppeft.engine.outputs import append_jsonl, write_json
from tppeft.report import write_report
from tppeft.stages import Context, finetune_stage, prepare_context, pretrain_stage
from tppeft.stats import bootstrap_ci, finite, mean_std, paired_difference

METRICS = ("acc", "auc")
PRIMARY_METRIC = "auc"
__all__ = ["ARM_HELP", "BackboneChangedError", "run_arm", "run_comparison", "summarize"]


class BackboneChangedError(RuntimeError):
    """The frozen backbone's weights changed during a run: a bug, never a result."""


def run_arm(ctx: Context, arm: str, seed: int, run_dir: Path, budget: dict | None = None) -> dict:
    """One arm, one seed: [TPP stage] + fine-tuning; returns the run's record.

    ``budget`` (from :func:`tppeft.budget.matched_budget`) gives ``baseline_matched`` its extra epochs.
    """
    start = time.perf_counter()
    run_dir.mkdir(parents=True, exist_ok=True)
    tag = f"[{arm} seed {seed}]"
    run, init_info = build_arm_model(ctx, arm, seed)
    counts = run.counts()
    what = ctx.cfg.peft.method if run.method is not None else ("all backbone weights" if not run.added
                                                                  else "head only")
    ctx.log(f"{tag} {what}: {counts['target_params']:,} trainable backbone/target parameters "
            f"({counts['target_percent']:.2f}% of {counts['backbone_params']:,} backbone parameters)")
    pretext = pretrain_stage(ctx, run, seed, run_dir, tag) if arm == "tpp" else None
    epochs = ctx.cfg.finetune.epochs
    if arm == "baseline_matched":
        if budget is None:
            raise ValueError("arm baseline_matched needs the matched budget (tppeft.budget.matched_budget)")
        epochs += budget["extra_epochs"]
    ft = finetune_stage(ctx, run, seed, run_dir, tag, epochs=epochs)
    if not run.frozen_unchanged():
        raise BackboneChangedError(f"{tag}: frozen backbone weights changed during the run")
    if ctx.template_digest and frozen_state_digest(ctx.backbone.model) != ctx.template_digest:
        raise BackboneChangedError(f"{tag}: the shared backbone template changed during the run")
    record = {"arm": arm, "seed": seed, "test": ft["test"], "val": ft["val"], "best_epoch": ft["best_epoch"],
              "finetune_epochs": epochs, "seconds": round(time.perf_counter() - start, 2),
              "finetune_seconds": round(ft["seconds"], 2), "pretext": pretext, "backbone_unchanged": True,
              **init_info, **counts}
    return record


def summarize(records: list[dict], cfg: Config, meta: dict) -> dict:
    """summary.json: per-arm runs, mean, std and 95% bootstrap CI of each metric, and paired tpp-minus-other
    differences (mean, CI, wins) over the seeds both arms ran."""
    arms: dict[str, dict] = {}
    for arm in cfg.arms:
        runs = [r for r in records if r["arm"] == arm]
        entry: dict = {"runs": runs, "mean": {}, "std": {}, "ci95": {}, "n": len(runs)}
        for m in METRICS:
            values = finite([r["test"].get(m) for r in runs])
            entry["mean"][m], entry["std"][m] = mean_std(values)
            entry["ci95"][m] = list(bootstrap_ci(values))
        pre = [r["pretext"] for r in runs if r.get("pretext")]
        if pre:
            entry["pretext_loss_start"] = mean_std([p["loss_start"] for p in pre])[0]
            entry["pretext_loss_end"] = mean_std([p["loss_end"] for p in pre])[0]
        entry["finetune_epochs"] = runs[0]["finetune_epochs"] if runs else None
        entry["seconds_mean"] = mean_std([r["seconds"] for r in runs])[0]
        arms[arm] = entry
    paired: dict[str, dict] = {}
    if "tpp" in arms:
        for other in cfg.arms:
            if other == "tpp":
                continue
            paired[f"tpp-{other}"] = {
                m: paired_difference({r["seed"]: r["test"].get(m) for r in arms["tpp"]["runs"]},
                                     {r["seed"]: r["test"].get(m) for r in arms[other]["runs"]})
                for m in METRICS}
    return {"tppeft_version": tppeft.__version__, "primary_metric": PRIMARY_METRIC, "metrics": list(METRICS),
            **meta, "arms": arms, "paired": paired}


def run_comparison(cfg: Config, out_dir: Path, log: Callable[[str], None] = print) -> dict:
    """Run all arms x seeds into ``out_dir`` and write config.yaml, results.jsonl, summary.json, report.md."""
    start = time.perf_counter()
    (out_dir / "config.yaml").write_text(config_to_yaml(cfg))
    ctx = prepare_context(cfg, log)
    meta = {"dataset": ctx.data.name, "task": ctx.data.task, "num_classes": ctx.data.num_classes,
            "split_sizes": {k: len(v) for k, v in ctx.data.splits.items()},
            "backbone": ctx.backbone.identity, "peft": cfg.peft.model_dump(), "pretext": cfg.pretext.model_dump(),
            "finetune": cfg.finetune.model_dump(), "seeds": list(range(cfg.seeds)), "device": str(ctx.device)}
    meta.update({arm: getattr(cfg, arm).model_dump() for arm in ("eva", "full_finetune") if arm in cfg.arms})
    overlap = seen_splits(ctx.backbone.identity, resolve(cfg.data.path))
    if overlap:
        meta["backbone_saw_this_data"] = overlap
        log(f"note: the backbone was pre-trained on the {', '.join(overlap)} split(s) of {cfg.data.path}")
    if "baseline_matched" in cfg.arms:
        budget = matched_budget(ctx)
        meta["baseline_matched"] = budget
        ratio = budget.get("tpp_stage_in_finetune_epochs")
        log(f"baseline_matched: {cfg.finetune.epochs} + {budget['extra_epochs']} fine-tuning epochs"
            + (f" (the TPP stage costs {ratio:.2f} fine-tuning epochs in counted FLOPs)" if ratio is not None else
               " (set by baseline_matched.extra_epochs)"))
    else:
        budget = None
    records = []
    total = cfg.seeds * len(cfg.arms)
    for seed in range(cfg.seeds):
        for arm in cfg.arms:
            log(f"== run {len(records) + 1}/{total}: arm {arm}, seed {seed} "
                f"[{time.perf_counter() - start:.0f}s elapsed]")
            record = run_arm(ctx, arm, seed, out_dir / "runs" / arm / f"seed{seed}", budget)
            records.append(record)
            append_jsonl(out_dir / "results.jsonl", record)
    summary = summarize(records, cfg, {**meta, "wall_seconds": round(time.perf_counter() - start, 1)})
    write_json(out_dir / "summary.json", summary)
    write_report(out_dir)
    return summary
