"""The comparison protocol: every arm runs every seed with the same data, budget and evaluation.

Arms: ``baseline`` (target parameters initialised the usual way) and ``tpp`` (the same parameters
pre-trained by the pretext task first). A seed fixes target-parameter init, head init, data order and
augmentation identically in every arm, so arms are compared seed by seed (paired).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import tppeft
from tppeft.config import Config, config_to_yaml
from tppeft.engine.outputs import append_jsonl, write_json
from tppeft.report import write_report
from tppeft.stages import Context, build_run_model, finetune_stage, prepare_context, pretrain_stage
from tppeft.stats import finite, mean_std, paired_difference

METRICS = ("acc", "auc")
PRIMARY_METRIC = "auc"
ARM_HELP = {
    "baseline": "ordinary PEFT: target parameters start from their usual init (LoRA: A random, B zero)",
    "tpp": "target parameters pre-trained by the pretext task, then the same fine-tuning",
}


class BackboneChangedError(RuntimeError):
    """The frozen backbone's weights changed during a run: a bug, never a result."""


def run_arm(ctx: Context, arm: str, seed: int, run_dir: Path) -> dict:
    """One arm, one seed: [TPP stage] + fine-tuning; returns the run's record."""
    start = time.perf_counter()
    run_dir.mkdir(parents=True, exist_ok=True)
    tag = f"[{arm} seed {seed}]"
    run = build_run_model(ctx, seed)
    counts = run.counts()
    ctx.log(f"{tag} {run.counts_text()}")
    pretext = pretrain_stage(ctx, run, seed, run_dir, tag) if arm == "tpp" else None
    ft = finetune_stage(ctx, run, seed, run_dir, tag)
    if not run.frozen_unchanged():
        raise BackboneChangedError(f"{tag}: backbone weights changed during the run")
    record = {"arm": arm, "seed": seed, "test": ft["test"], "val": ft["val"], "best_epoch": ft["best_epoch"],
              "seconds": round(time.perf_counter() - start, 2), "finetune_seconds": round(ft["seconds"], 2),
              "pretext": pretext, "backbone_unchanged": True, **counts}
    return record


def summarize(records: list[dict], cfg: Config, meta: dict) -> dict:
    """summary.json: per-arm runs, mean and std of each metric, and paired tpp-minus-other differences."""
    arms: dict[str, dict] = {}
    for arm in cfg.arms:
        runs = [r for r in records if r["arm"] == arm]
        entry: dict = {"runs": runs, "mean": {}, "std": {}, "n": len(runs)}
        for m in METRICS:
            mu, sd = mean_std(finite([r["test"].get(m) for r in runs]))
            entry["mean"][m], entry["std"][m] = mu, sd
        pre = [r["pretext"] for r in runs if r.get("pretext")]
        if pre:
            entry["pretext_loss_start"] = mean_std([p["loss_start"] for p in pre])[0]
            entry["pretext_loss_end"] = mean_std([p["loss_end"] for p in pre])[0]
        entry["seconds_mean"] = mean_std([r["seconds"] for r in runs])[0]
        arms[arm] = entry
    paired: dict[str, dict] = {}
    if "tpp" in arms:
        for other in cfg.arms:
            if other == "tpp":
                continue
            paired[f"tpp-{other}"] = {
                m: paired_difference({r["seed"]: r["test"][m] for r in arms["tpp"]["runs"]},
                                     {r["seed"]: r["test"][m] for r in arms[other]["runs"]})
                for m in METRICS}
    first = records[0] if records else {}
    target = {"method": cfg.peft.method, "count": first.get("target_params"),
              "backbone_params": first.get("backbone_params"), "percent": first.get("target_percent")}
    return {"tppeft_version": tppeft.__version__, "primary_metric": PRIMARY_METRIC, "metrics": list(METRICS),
            **meta, "target_params": target, "arms": arms, "paired": paired}


def run_comparison(cfg: Config, out_dir: Path, log: Callable[[str], None] = print) -> dict:
    """Run all arms x seeds into ``out_dir`` and write config.yaml, results.jsonl, summary.json, report.md."""
    start = time.perf_counter()
    (out_dir / "config.yaml").write_text(config_to_yaml(cfg))
    ctx = prepare_context(cfg, log)
    meta = {"dataset": ctx.data.name, "task": ctx.data.task, "num_classes": ctx.data.num_classes,
            "split_sizes": {k: len(v) for k, v in ctx.data.splits.items()},
            "backbone": ctx.backbone.identity, "peft": cfg.peft.model_dump(), "pretext": cfg.pretext.model_dump(),
            "finetune": cfg.finetune.model_dump(), "seeds": list(range(cfg.seeds)), "device": str(ctx.device)}
    records = []
    total = cfg.seeds * len(cfg.arms)
    for seed in range(cfg.seeds):
        for arm in cfg.arms:
            log(f"== run {len(records) + 1}/{total}: arm {arm}, seed {seed} "
                f"[{time.perf_counter() - start:.0f}s elapsed]")
            record = run_arm(ctx, arm, seed, out_dir / "runs" / arm / f"seed{seed}")
            records.append(record)
            append_jsonl(out_dir / "results.jsonl", record)
    summary = summarize(records, cfg, {**meta, "wall_seconds": round(time.perf_counter() - start, 1)})
    write_json(out_dir / "summary.json", summary)
    write_report(out_dir)
    return summary
