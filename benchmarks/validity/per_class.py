"""Where a multi-class comparison's TPP gain comes from: each class's one-vs-rest test AUC per arm, and tpp's paired
difference with each other arm per class, from the runs' kept test scores.

The primary AUC of a multi-class comparison is the mean of these per-class AUCs (MedMNIST's); this table splits it.
Comparisons now report them themselves (``auc_<k>`` in ``summary.json`` and the report); this script reads folders
made before that, from their test scores. Descriptive: read it after the comparison, not to choose anything.

    python benchmarks/validity/per_class.py RUN_DIR [--json out.json]

RUN_DIR is a comparison's folder (or a kept result folder) with ``runs/<arm>/seed<k>/test_scores.npz``; class
names come from its ``summary.json`` when it has one.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from kept import print_table, run_scores, write_rows

from tppeft.reporting.stats import mean_std, paired_difference
from tppeft.tasks.classification import one_vs_rest_aucs


def per_class_auc(folder: Path) -> dict[str, dict[int, list[float]]]:
    """arm -> seed -> one-vs-rest AUC of each class (NaN where the test split lacks the class or holds nothing else)."""
    out: dict[str, dict[int, list[float]]] = {}
    for arm, seed, labels, scores in run_scores(folder):
        if scores.ndim != 2 or scores.shape[1] < 3:
            sys.exit(f"{folder}: runs/{arm}/seed{seed} holds {scores.shape} scores; a per-class table needs 3 classes "
                     "or more (a binary AUC is one number)")
        out.setdefault(arm, {})[seed] = one_vs_rest_aucs(labels.reshape(-1), scores)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path, help="a multi-class comparison's folder, with its runs' test scores")
    ap.add_argument("--json", type=Path, help="also write the rows as data")
    args = ap.parse_args(argv)
    table = per_class_auc(args.folder)
    if not table:
        sys.exit(f"{args.folder}: no runs/<arm>/seed<k>/test_scores.npz (the run folders were not kept)")
    arms = list(table)
    classes = len(next(iter(table[arms[0]].values())))
    summary = args.folder / "summary.json"
    names = (json.loads(summary.read_text()).get("class_names") if summary.is_file() else None) or []
    others = [a for a in arms if a != "tpp"] if "tpp" in arms else []
    rows, lines = [], []
    for c in range(classes):
        per_arm = {a: {s: v[c] for s, v in table[a].items()} for a in arms}
        means = {a: mean_std(list(per_arm[a].values()))[0] for a in arms}
        diffs = {a: paired_difference(per_arm["tpp"], per_arm[a]) for a in others}
        name = names[c] if c < len(names) and names[c] != str(c) else ""
        rows.append({"class": c, "name": name, "means": means,
                     "paired": {a: {k: d[k] for k in ("mean", "ci95", "wins", "n", "sign_test_p")}
                                for a, d in diffs.items()}})
        cells = [f"{means[a]:.3f}" for a in arms] + [
            f"{d['mean']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}], {d['wins']} of {d['n']}"
            for d in diffs.values()]
        lines.append(f"| {c} {name}".rstrip() + " | " + " | ".join(cells) + " |")
    print_table(["class (one vs rest)", *[f"{a} AUC" for a in arms], *[f"tpp − {a}" for a in others]], lines)
    write_rows(args.json, rows)


if __name__ == "__main__":
    main()
