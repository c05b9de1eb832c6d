"""Numbers a comparison must keep across refactors: every run's metrics and every statistic of summary.json.

``numbers(folder)`` extracts them (no timings, no paths); the tests compare a fresh run's numbers with the ones
recorded in ``tests/fixtures/golden.json`` by the code as it was before a refactor. Regenerate a case with
``python tests/golden.py CASE FOLDER`` only when a change is *meant* to change results, and say so in its commit.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

GOLDEN = Path(__file__).parent / "fixtures" / "golden.json"
RUN_KEYS = ("arm", "seed", "status", "test", "val", "best_epoch", "finetune_epochs", "target_params",
            "backbone_params", "eva_ranks", "skipped_steps")
PRETEXT_KEYS = ("method", "loss_start", "loss_end", "train_loss_curve", "epochs", "steps")
SUMMARY_KEYS = ("primary_metric", "metrics", "split_sizes", "target_params", "baseline_matched")
ARM_KEYS = ("n", "mean", "std", "ci95", "finetune_epochs", "pretext_loss_start", "pretext_loss_end")
# Absolute tolerances per case for numbers that differ between CPUs by more than a kernel's rounding, named by a
# key anywhere in their path. Segmentation Dice/IoU come from the argmax of upsampled logits, so a pixel whose
# classes tie within rounding flips, and the fine-tuning after a TPP stage carries the stage's rounding on. Two
# x86-64 CPUs (the machine that recorded the numbers and an AMD EPYC) differed by at most 3.9e-4 in Dice,
# 2.6e-4 in IoU (paired differences included) and 5.1e-5 in a loss, with every other number within 1e-6: the
# tolerances are five times those.
TOLERANCES = {"busi": {"dice": 2e-3, "iou": 2e-3, "loss": 2.5e-4}}


def numbers(folder: Path) -> dict:
    folder = Path(folder)
    runs = []
    for line in (folder / "results.jsonl").read_text().splitlines():
        r = json.loads(line)
        rec = {k: r[k] for k in RUN_KEYS if k in r}
        if r.get("pretext"):
            rec["pretext"] = {k: r["pretext"][k] for k in PRETEXT_KEYS}
        runs.append(rec)
    s = json.loads((folder / "summary.json").read_text())
    budget = s.get("baseline_matched")
    summary = {k: s[k] for k in SUMMARY_KEYS if k in s}
    if budget:
        summary["baseline_matched"] = {k: v for k, v in budget.items() if "seconds" not in k}
    summary["arms"] = {a: {k: e[k] for k in ARM_KEYS if k in e} for a, e in s["arms"].items()}
    summary["paired"] = s["paired"]
    return {"runs": runs, "summary": summary}


def _tolerance(where: str, rel: float, loose: dict[str, float]) -> float:
    keys = {part.split("[")[0] for part in where.split(".")}
    return max([rel, *(tol for key, tol in loose.items() if key in keys)])


def differences(got, want, where: str = "", rel: float = 1e-6, loose: dict[str, float] | None = None) -> list[str]:
    """Where ``got`` differs from ``want``: floats within ``rel`` (1e-6: a change of kernel, not of logic), or
    within ``loose[key]`` (absolute) where ``key`` names a part of their path."""
    loose = loose or {}
    if isinstance(want, dict) and isinstance(got, dict):
        out = [f"{where}.{k}: missing" for k in want if k not in got]
        out += [f"{where}.{k}: unexpected" for k in got if k not in want]
        for k in want:
            if k in got:
                out += differences(got[k], want[k], f"{where}.{k}", rel, loose)
        return out
    if isinstance(want, list) and isinstance(got, list) and len(got) == len(want):
        return [d for i, (g, w) in enumerate(zip(got, want, strict=True))
                for d in differences(g, w, f"{where}[{i}]", rel, loose)]
    if isinstance(want, float) and isinstance(got, int | float) and not isinstance(got, bool):
        tol = _tolerance(where, rel, loose)
        return [] if math.isclose(got, want, rel_tol=rel, abs_tol=tol) else [f"{where}: {got} != {want}"]
    return [] if got == want else [f"{where}: {got!r} != {want!r}"]


def check(case: str, folder: Path) -> list[str]:
    want = json.loads(GOLDEN.read_text())[case]
    return differences(numbers(folder), want, case, loose=TOLERANCES.get(case))


if __name__ == "__main__":
    case, folder = sys.argv[1], Path(sys.argv[2])
    table = json.loads(GOLDEN.read_text()) if GOLDEN.is_file() else {}
    table[case] = numbers(folder)
    GOLDEN.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    print(f"recorded {case} from {folder}")
