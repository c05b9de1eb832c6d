"""PNG figures of a run folder, drawn from summary.json and the runs' metrics.jsonl only (matplotlib, Agg)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window; set before pyplot is imported
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from tppeft.rundir import RunFolder  # noqa: E402

METRIC_PLOT = "metric_by_arm.png"
CURVES_PLOT = "loss_curves.png"
PAIRED_PLOT = "paired_differences.png"


def read_curves(run_dir: Path, summary: dict) -> dict[str, dict[int, dict[str, list]]]:
    """Per arm and seed: pretext training loss, fine-tuning training loss and validation metrics per epoch."""
    out: dict[str, dict[int, dict[str, list]]] = {}
    folder = RunFolder(run_dir)
    for arm, entry in summary["arms"].items():
        for r in entry["runs"]:
            path = folder.run(arm, r["seed"]).metrics
            if not path.is_file():
                continue
            curves: dict[str, list] = {"pretext": [], "finetune": [], "val": []}
            for line in path.read_text().splitlines():
                if not line.strip():
                    continue
                rec = json.loads(line)
                if "epoch" not in rec or rec.get("event") == "end":
                    continue
                stage = rec.get("stage")
                if stage == "pretext":
                    curves["pretext"].append((rec["epoch"], rec["train_loss"]))
                elif stage == "finetune":
                    curves["finetune"].append((rec["epoch"], rec["train_loss"]))
                    curves["val"].append((rec["epoch"], rec.get("val", {})))
            pre = r.get("pretext") or {}
            if not curves["pretext"] and pre.get("shared"):  # a shared stage logged in its own folder
                curves["pretext"] = [(i + 1, v) for i, v in enumerate(pre.get("train_loss_curve", []))]
            out.setdefault(arm, {})[r["seed"]] = curves
    return out


def _colours(arms: list[str]) -> dict[str, tuple]:
    cmap = plt.get_cmap("tab10")
    return {arm: cmap(i % 10) for i, arm in enumerate(arms)}


MIN_SPAN = 0.1  # metrics in [0, 1]: the y axis spans at least this much, so a tiny effect looks tiny


def _honest_limits(ax, values: list[float], bounded: bool) -> None:
    """Widen the value axis to at least MIN_SPAN around the data (clipped to [0, 1] for bounded metrics)."""
    if not values:
        return
    lo, hi = min(values), max(values)
    if hi - lo < MIN_SPAN:
        mid = (lo + hi) / 2
        lo, hi = mid - MIN_SPAN / 2, mid + MIN_SPAN / 2
        if bounded:
            shift = max(0.0, -lo) - max(0.0, hi - 1.0)
            lo, hi = lo + shift, hi + shift
    pad = 0.05 * (hi - lo)
    ax.set_ylim(lo - pad, hi + pad)


def plot_metric_by_arm(summary: dict, path: Path) -> Path:
    """Test primary metric per arm: one dot per seed, the mean with its 95% bootstrap interval, grey lines joining
    a seed across arms; the axis spans at least ``MIN_SPAN`` so that seed-to-seed noise is not drawn as an effect."""
    metric = summary["primary_metric"]
    arms = list(summary["arms"])
    colours = _colours(arms)
    fig, ax = plt.subplots(figsize=(1.4 * len(arms) + 2.5, 3.6), dpi=110)
    by_seed: dict[int, list[tuple[int, float]]] = {}
    shown: list[float] = []
    for i, arm in enumerate(arms):
        runs = summary["arms"][arm]["runs"]
        values = [r["test"].get(metric) for r in runs]
        points = [(r["seed"], v) for r, v in zip(runs, values, strict=True) if v is not None and math.isfinite(v)]
        offsets = np.linspace(-0.12, 0.12, len(points)) if len(points) > 1 else [0.0] * len(points)
        for (seed, v), dx in zip(points, offsets, strict=True):
            ax.scatter(i + dx, v, s=28, color=colours[arm], zorder=3, edgecolors="white", linewidths=0.5)
            by_seed.setdefault(seed, []).append((i + dx, v))
            shown.append(v)
        mean = summary["arms"][arm]["mean"].get(metric)
        ci = summary["arms"][arm].get("ci95", {}).get(metric)
        if mean is not None and math.isfinite(mean):
            if ci and all(c is not None and math.isfinite(c) for c in ci):
                ax.errorbar(i + 0.28, mean, yerr=[[mean - ci[0]], [ci[1] - mean]], fmt="o", color="black",
                            capsize=4, markersize=4)
                shown += list(ci)
            else:
                ax.scatter(i + 0.28, mean, marker="o", color="black", s=16)
    for pts in by_seed.values():
        if len(pts) > 1:
            xs, ys = zip(*pts, strict=True)
            ax.plot(xs, ys, color="0.8", linewidth=0.7, zorder=1)
    _honest_limits(ax, shown, bounded=True)
    ax.set_xticks(range(len(arms)), arms, rotation=20, ha="right")
    ax.set_ylabel(f"test {metric.upper()}")
    ax.set_title(f"{summary.get('dataset', '')}: test {metric.upper()} per arm (dots = seeds, black = mean, 95% CI)",
                 fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_roc(curves: dict[str, list[tuple[np.ndarray, np.ndarray, float]]], path: Path, pooled: bool) -> Path:
    """Test ROC curves: one thin line per seed, one colour per arm, the arm's mean AUC over seeds in the legend.
    ``pooled``: the curves are one-vs-rest over every (image, class) pair (micro average; the reported AUC is the
    mean of the per-class AUCs, so the two may differ)."""
    colours = _colours(list(curves))
    fig, ax = plt.subplots(figsize=(4.6, 4.2), dpi=110)
    for arm, runs in curves.items():
        for k, (fpr, tpr, _) in enumerate(runs):
            ax.plot(fpr, tpr, color=colours[arm], linewidth=1.0, alpha=0.8,
                    label=f"{arm} (AUC {np.mean([r[2] for r in runs]):.3f}, {len(runs)} seed(s))" if k == 0 else None)
    ax.plot([0, 1], [0, 1], color="0.7", linewidth=0.8, linestyle="--")
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate")
    ax.set_title("test ROC, one-vs-rest pooled over classes" if pooled else "test ROC", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_paired(summary: dict, path: Path) -> Path | None:
    """One row per comparison (TPP minus another arm, primary metric): each seed's difference, the mean with its
    95% bootstrap interval, and zero; the axis spans at least ``MIN_SPAN``."""
    metric = summary["primary_metric"]
    rows = [(name, d[metric]) for name, d in summary.get("paired", {}).items() if metric in d]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(7, 0.6 * len(rows) + 1.6), dpi=110)
    shown = [0.0]
    for k, (_, d) in enumerate(rows):
        y = len(rows) - 1 - k
        diffs = [v for v in d.get("per_seed", {}).values() if v is not None and math.isfinite(v)]
        ax.scatter(diffs, [y] * len(diffs), s=22, color="0.55", zorder=2)
        shown += diffs
        mean, ci = d.get("mean"), d.get("ci95") or [None, None]
        if mean is not None and math.isfinite(mean):
            if all(c is not None and math.isfinite(c) for c in ci):
                ax.errorbar(mean, y, xerr=[[mean - ci[0]], [ci[1] - mean]], fmt="o", color="black", capsize=4,
                            zorder=3)
                shown += list(ci)
            else:
                ax.scatter(mean, y, color="black", zorder=3)
    ax.axvline(0, color="tab:red", linewidth=1)
    lo, hi = min(shown), max(shown)
    half = max(MIN_SPAN / 2, abs(lo), abs(hi)) * 1.1
    ax.set_xlim(-half, half)
    ax.set_yticks(range(len(rows)), [name.replace("-", " − ", 1) for name, _ in reversed(rows)])
    ax.set_xlabel(f"paired difference in test {metric.upper()} (dots = seeds, black = mean, 95% CI)")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_curves(curves: dict, summary: dict, path: Path) -> Path:
    """Three panels: pretext training loss, fine-tuning training loss, validation primary metric, per epoch."""
    metric = summary["primary_metric"]
    colours = _colours(list(summary["arms"]))
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), dpi=110)
    panels = [("pretext", "TPP stage: pretext training loss"), ("finetune", "fine-tuning: training loss"),
              ("val", f"fine-tuning: validation {metric.upper()}")]
    for ax, (key, title) in zip(axes, panels, strict=True):
        for arm, seeds in curves.items():
            for k, (_, c) in enumerate(sorted(seeds.items())):
                pts = c[key]
                if key == "val":
                    pts = [(e, v.get(metric)) for e, v in pts if v.get(metric) is not None]
                if not pts:
                    continue
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, ys, color=colours[arm], alpha=0.75, linewidth=1.1, marker="o", markersize=2.5,
                        label=arm if k == 0 else None)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "no epochs recorded", ha="center", va="center", transform=ax.transAxes, color="0.5")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_plots(run_dir: Path, summary: dict) -> dict[str, Path]:
    """The figures drawn from summary.json, and the training curves from the runs' metrics.jsonl. A folder that
    keeps no run (a result folder re-rendered from its summary) keeps the curves figure it has, if any, rather
    than getting an empty one."""
    folder = RunFolder(run_dir)
    plots = {"metric": plot_metric_by_arm(summary, folder.figure(METRIC_PLOT)),
             "paired": plot_paired(summary, folder.figure(PAIRED_PLOT))}
    curves, kept = read_curves(folder.root, summary), folder.figure(CURVES_PLOT)
    if curves:
        plots["curves"] = plot_curves(curves, summary, kept)
    elif kept.is_file():
        plots["curves"] = kept
    return {k: v for k, v in plots.items() if v is not None}
