"""TPP's gain on the test images that have a near-twin among the training images, and on those that do not; and on
the test images the backbone saw in its own pre-training, and on those it did not.

BreastMNIST and BUSI (the same source images) hold many test images that are nearly the same picture as a training
image (the same lesion imaged twice, a copy with or without calliper marks): at 32x32, each image z-normalised, a
correlation of at least 0.98 (``tppeft.data.overlap.NEAR``, the criterion ``pack_pool.py`` uses for brain MRI's
near-twins), fixed before this script measured anything. A TPP stage sees every training image, unlabelled, and
fine-tuning only the labelled few, so a TPP gain could come from test images whose twin the stage saw. This script
splits a classification comparison's test images by that criterion and gives, per group, each arm's mean of the
primary metric (recomputed from every run's ``test_scores.npz``, as the run computed it) and tpp's paired
differences with the other arms. Where the backbone carries the keys of its pre-training images (b0, and backbones
made by ``tppeft backbone-pretrain``), the test images are also split by whether its pool held them (for b0 on
BUSI and BreastMNIST: the same scan, under the other data set's split), so a gain on a backbone that had seen the
test images can be read on the ones it had not.

    python benchmarks/validity/near_twins.py RUN_DIR [--near 0.98] [--metric auc_0] [--json out.json]

RUN_DIR is a comparison's folder with its run folders (``runs/<arm>/seed<k>/test_scores.npz``); the data file its
``config.yaml`` names must be where the config says. ``--metric`` tables another of the run's test metrics than
the primary one, e.g. one class's one-vs-rest AUC (``auc_<k>``), to read a group's gain class by class. The "all"
group repeats the run's own test scores (a check that the scores and images line up). Descriptive: the groups are
not chosen at random, and each is small.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from kept import run_scores

from tppeft.config import load_config
from tppeft.data.overlap import NEAR, found_in, image_keys, nearest, thumbnails
from tppeft.experiment.context import prepare_context
from tppeft.reporting.stats import mean_std, paired_difference
from tppeft.tasks.classification import classification_metrics


def groups(folder: Path, near: float) -> tuple[dict[str, np.ndarray], np.ndarray, str, str]:
    """The test images' groups as boolean masks, their labels, the label type and the primary metric."""
    cfg = load_config(folder / "config.yaml")
    if cfg.task.type not in ("auto", "classification"):
        sys.exit(f"{folder}: a {cfg.task.type} comparison; this script reads classification test scores")
    ctx = prepare_context(cfg, log=lambda _: None)  # the run's data, and the backbone's pool as the run reads it
    data = ctx.data
    closest = nearest(thumbnails(data["test"].images), thumbnails(data["train"].images)).numpy()
    exact = np.array(found_in(image_keys(data["test"].images), image_keys(data["train"].images)), dtype=bool)
    masks = {"all": np.ones(len(closest), bool), f"twin in train (>= {near})": closest >= near,
             "no twin in train": closest < near, "exact copy in train": exact}
    if (pool := ctx.backbone_pool) is not None:
        seen = np.array(found_in(ctx.split_keys()["test"], pool), dtype=bool)
        masks |= {"in the backbone's pool": seen, "not in the backbone's pool": ~seen}
    summary = folder / "summary.json"  # absent while the comparison runs: classification's primary metric, AUC
    metric = json.loads(summary.read_text())["primary_metric"] if summary.is_file() else "auc"
    masks = {g: m for g, m in masks.items() if m.any()}  # an empty group has no scores
    return masks, data["test"].labels.cpu().numpy(), data.task, metric


def scores(folder: Path, masks: dict[str, np.ndarray], task: str, metric: str) -> dict[str, dict[str, dict]]:
    """group -> arm -> seed -> the primary metric on that group's test images."""
    out: dict[str, dict[str, dict]] = {g: {} for g in masks}
    for arm, seed, labels, scores in run_scores(folder):
        for g, m in masks.items():
            out[g].setdefault(arm, {})[seed] = classification_metrics(labels[m], scores[m], task)[metric]
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path, help="a classification comparison's folder, with its run folders")
    ap.add_argument("--near", type=float, default=NEAR, help="correlation at 32x32 from which images are twins")
    ap.add_argument("--metric", help="the test metric tabled (default: the comparison's primary one), e.g. auc_0")
    ap.add_argument("--json", type=Path, help="also write the rows as data")
    args = ap.parse_args(argv)
    masks, labels, task, metric = groups(args.folder, args.near)
    metric = args.metric or metric
    table = scores(args.folder, masks, task, metric)
    if not table["all"]:
        sys.exit(f"{args.folder}: no runs/<arm>/seed<k>/test_scores.npz (the run folders were not kept)")
    arms = list(table["all"])
    others = [a for a in arms if a != "tpp"] if "tpp" in arms else []
    head = ["test images", "n", "per class", *[f"{a} {metric.upper()}" for a in arms], *[f"tpp − {a}" for a in others]]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    rows = []
    for g, per_arm in table.items():
        means = {a: mean_std(list(per_arm[a].values()))[0] for a in arms}
        diffs = {a: paired_difference(per_arm["tpp"], per_arm[a]) for a in others if per_arm.get("tpp")}
        per_class = np.bincount(labels[masks[g]].reshape(-1), minlength=int(labels.max()) + 1).tolist()
        rows.append({"group": g, "images": int(masks[g].sum()), "per_class": per_class, "means": means,
                     "paired": {a: {k: d[k] for k in ("mean", "ci95", "wins", "n", "sign_test_p")}
                                for a, d in diffs.items()}})
        cells = [f"{means[a]:.3f}" for a in arms] + [
            f"{d['mean']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}], {d['wins']} of {d['n']}"
            for d in diffs.values()]
        print(f"| {g} | {masks[g].sum()} | {' / '.join(map(str, per_class))} | " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
