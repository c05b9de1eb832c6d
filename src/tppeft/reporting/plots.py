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
            out.setdefault(arm, {})[r["seed"]] = curves
    return out


def _colours(arms: list[str]) -> dict[str, tuple]:
    cmap = plt.get_cmap("tab10")
    return {arm: cmap(i % 10) for i, arm in enumerate(arms)}


def plot_metric_by_arm(summary: dict, path: Path) -> Path:
    """Test primary metric per arm: one dot per seed, mean ± std bar, grey lines joining a seed across arms."""
    metric = summary["primary_metric"]
    arms = list(summary["arms"])
    colours = _colours(arms)
    fig, ax = plt.subplots(figsize=(1.4 * len(arms) + 2.5, 3.6), dpi=110)
    by_seed: dict[int, list[tuple[int, float]]] = {}
    for i, arm in enumerate(arms):
        runs = summary["arms"][arm]["runs"]
        values = [r["test"].get(metric) for r in runs]
        points = [(r["seed"], v) for r, v in zip(runs, values, strict=True) if v is not None and math.isfinite(v)]
        offsets = np.linspace(-0.12, 0.12, len(points)) if len(points) > 1 else [0.0] * len(points)
        for (seed, v), dx in zip(points, offsets, strict=True):
            ax.scatter(i + dx, v, s=28, color=colours[arm], zorder=3, edgecolors="white", linewidths=0.5)
            by_seed.setdefault(seed, []).append((i + dx, v))
        mean, std = summary["arms"][arm]["mean"].get(metric), summary["arms"][arm]["std"].get(metric)
        if mean is not None and math.isfinite(mean):
            ax.errorbar(i + 0.28, mean, yerr=std or 0.0, fmt="_", color="black", capsize=4, markersize=14)
    for pts in by_seed.values():
        if len(pts) > 1:
            xs, ys = zip(*pts, strict=True)
            ax.plot(xs, ys, color="0.8", linewidth=0.7, zorder=1)
    ax.set_xticks(range(len(arms)), arms, rotation=20, ha="right")
    ax.set_ylabel(f"test {metric.upper()}")
    ax.set_title(f"{summary.get('dataset', '')}: test {metric.upper()} per arm (dots = seeds, bar = mean ± std)",
                 fontsize=9)
    ax.grid(axis="y", alpha=0.3)
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
    folder = RunFolder(run_dir)
    return {"metric": plot_metric_by_arm(summary, folder.figure(METRIC_PLOT)),
            "curves": plot_curves(read_curves(folder.root, summary), summary, folder.figure(CURVES_PLOT))}
