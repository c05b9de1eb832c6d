"""Is the comparison fair in training budget? Two checks the report puts under its verdict.

- Fine-tuning long enough: an arm whose best validation epoch falls in the last quarter of its fine-tuning epochs
  in at least half of its seeds was probably still improving when it stopped, and a difference against it at
  equal epochs may be one against an under-trained arm (docs/few-labels.md).
- Compute matched: without `baseline_matched` the TPP arm has had more training compute than the baseline.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tppeft.reporting.stats import paired_difference

BUDGET_TITLE = "Fine-tuning may be too short"  # the report's heading of the first check
LATE_SHARE = 0.75  # a best epoch after this share of the budget counts as late
MIN_EPOCHS = 4  # with fewer epochs "the last quarter" is the last epoch alone: no reading


@dataclass(frozen=True)
class LateBest:
    """One arm whose best validation epoch came late in most seeds."""

    arm: str
    epochs: int
    late: int
    runs: int
    best_epochs: tuple[int, ...]


def late_best_arms(summary: dict) -> list[LateBest]:
    """The arms of a summary whose best validation epoch was late (see the module) in at least half their runs."""
    default = (summary.get("finetune") or {}).get("epochs")
    found = []
    for arm, entry in summary.get("arms", {}).items():
        epochs = entry.get("finetune_epochs") or default
        best = tuple(r["best_epoch"] for r in entry.get("runs", []) if r.get("best_epoch") is not None)
        if not best or not isinstance(epochs, int) or epochs < MIN_EPOCHS:
            continue
        late = sum(b > LATE_SHARE * epochs for b in best)
        if 2 * late >= len(best):
            found.append(LateBest(arm, epochs, late, len(best), best))
    return found


def budget_lines(summary: dict) -> list[str]:
    """One line per arm that may have stopped too early, then what to do about it; empty when none did."""
    late = late_best_arms(summary)
    lines = [f"`{a.arm}`: best validation epoch in the last quarter of its {a.epochs} fine-tuning epochs in "
             f"{a.late} of {a.runs} seeds ({', '.join(map(str, a.best_epochs))}): it was probably still improving "
             "when it stopped" for a in late]
    if not lines:
        return lines
    matched = "baseline_matched" in summary.get("arms", {}) and all(a.arm != "baseline_matched" for a in late)
    lines.append("A difference at equal fine-tuning epochs can then be a difference against an under-trained arm: "
                 + ("read TPP against `baseline_matched` here, which had the TPP stage's compute as fine-tuning and "
                    "did not stop late" if matched else
                    "raise `finetune.epochs` (chosen on validation, never on test) or compare with "
                    "`baseline_matched`, which gives the baseline the TPP stage's compute as fine-tuning") + ".")
    return lines


def unmatched_compute_line(summary: dict) -> str | None:
    """A comparison of TPP without `baseline_matched` compares at unequal compute: say so, and how to match it."""
    if "baseline_matched" in summary.get("arms", {}) or not summary.get("paired"):
        return None
    return ("No `baseline_matched` arm: the TPP stage's compute is not matched, so a TPP gain here is a gain at more "
            "compute. Add `baseline_matched` to `arms` to give the baseline that compute as fine-tuning epochs. In "
            "the settings measured so far TPP beat it only where one TPP stage served several fine-tuning runs "
            "(`pretext.stage_seed`, `baseline_matched.stage_shared_by`), with few labels and SimCLR as the pretext "
            "task: on brain MRI, which the backbone never saw, most clearly with a SimCLR stage long in steps, on "
            "200 unlabelled images as on 4,317 (16 labels per class, "
            "`study_brain_mri_few_labels_simclr_many_unlabelled_long`; for your own data the bundled config "
            "`few_labels_simclr_long_stage`), and on BUSI breast ultrasound at 64 px, which b0 had seen, unlabelled "
            "(three classes, 55 labels, `study_busi_few_labels_simclr_one_stage`; with 164 labelled it tied the "
            "compute-matched baseline, `study_busi_30_percent_labels_simclr_one_stage`, and with all 546 plain "
            "fine-tuning, `study_busi_all_labels_simclr_one_stage`); the same stage did not pay on hippocampus "
            "segmentation "
            "(`study_hippocampus_few_labels_simclr_long_stage`). MAE and feature-distillation stages tied or lost, "
            "DINO stages lost, or with DINO's own recipe tied the compute-matched baseline, and with a stage "
            "per run TPP at best tied (\"Does TPP help?\" in the documentation).")


def matched_below_line(summary: dict) -> str | None:
    """`baseline_matched` below `baseline` on the primary metric in most seeds: its extra epochs did not help plain
    fine-tuning, so TPP's difference with it measures those epochs more than TPP (say so, and read `baseline` too)."""
    arms, primary = summary.get("arms", {}), summary["primary_metric"]
    if "baseline_matched" not in arms or "baseline" not in arms:
        return None
    d = paired_difference(*({r["seed"]: (r.get("test") or {}).get(primary) for r in arms[a]["runs"]}
                            for a in ("baseline_matched", "baseline")))
    if d["n"] < 2 or d["losses"] * 2 <= d["n"]:
        return None
    return (f"`baseline_matched` scored below `baseline` in {d['losses']} of {d['n']} seeds (test {primary.upper()}): "
            "the extra fine-tuning epochs it was given for the TPP stage's compute did not help plain fine-tuning "
            "here, so TPP's difference with it measures those epochs more than TPP; read TPP against `baseline` "
            "too.")


def extra_epochs_text(values: Iterable[int]) -> str:
    """Extra fine-tuning epochs in words: one number, or their range where each seed's run has its own."""
    extra = sorted(set(values))
    if len(extra) > 1:
        return f"{extra[0]}–{extra[-1]} (per seed: each run charged the stage in its own epochs)"
    return str(extra[0])
