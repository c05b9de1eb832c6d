"""report.md, report.html and their PNG figures from a run folder's summary.json and metrics.jsonl files only
(never from live objects), so they can be rebuilt at any time with ``tppeft report DIR``."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

from tppeft.backbones.seen import pool_text, seen_by_name
from tppeft.data.classes import groups_text
from tppeft.errors import ReportError
from tppeft.io import write_text
from tppeft.reporting.budget import (
    BUDGET_TITLE,
    budget_lines,
    extra_epochs_text,
    matched_below_line,
    unmatched_compute_line,
)
from tppeft.reporting.document import (
    Block,
    Box,
    Heading,
    Image,
    Para,
    Table,
    table_markdown,
    to_html,
    to_markdown,
)
from tppeft.reporting.stats import finite, mean_std, sign_test_p
from tppeft.revision import DIRTY
from tppeft.rundir import EXAMPLES_FIGURE, ROC_FIGURE, SUMMARY, RunFolder


def is_missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def fmt_num(v: float | None, digits: int = 3) -> str:
    return "n/a" if is_missing(v) else f"{v:.{digits}f}"


def fmt_signed(v: float | None, digits: int = 3) -> str:
    return "n/a" if is_missing(v) else f"{v:+.{digits}f}"


def fmt_ci(ci: list | None, signed: bool = False) -> str:
    if not ci or is_missing(ci[0]) or is_missing(ci[1]):
        return "n/a"
    f = fmt_signed if signed else fmt_num
    return f"[{f(ci[0])}, {f(ci[1])}]"


def class_metric(metric: str) -> tuple[str, int] | None:
    """``(metric, class id)`` of a per-class metric's name (``auc_2``, ``dice_1``: the id after the underscore),
    None for a metric of the whole split."""
    base, _, k = metric.rpartition("_")
    return (base, int(k)) if base and k.isdigit() else None


def overall_metrics(summary: dict) -> list[str]:
    """The summary's metrics of the whole split: the per-class ones get their own tables."""
    return [m for m in summary["metrics"] if class_metric(m) is None]


def class_name(k: int, summary: dict) -> str:
    names = summary.get("class_names") or []
    return names[k] if k < len(names) else f"class {k}"


def metric_label(metric: str, summary: dict) -> str:
    """A metric's name in tables: upper case; a per-class one with its class's name (or id)."""
    if (found := class_metric(metric)) is None:
        return metric.upper()
    return f"{found[0].upper()} {class_name(found[1], summary)}"


def load_summary(run_dir: Path) -> dict:
    path = RunFolder(run_dir).summary
    if not path.is_file():
        raise ReportError(f"'{run_dir}' holds no {SUMMARY}: not a finished `tppeft run` folder")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ReportError(f"{path}: not valid JSON ({e})") from None


def fmt_spread(mean: float | None, std: float | None, n: int) -> str:
    """``mean ± std``; with one value there is no spread to show, so it says n = 1."""
    return f"{fmt_num(mean)} (n = 1)" if n == 1 else f"{fmt_num(mean)} ± {fmt_num(std)}"


def splits_text(sizes: dict | None) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in (sizes or {}).items()) or "?"


def val_mean(entry: dict, metric: str) -> float | None:
    """The mean over an arm's runs of the validation ``metric`` at each run's selected epoch: what a setting is
    chosen on (never the test metric)."""
    values = finite([(r.get("val") or {}).get(metric) for r in entry.get("runs", [])])
    return mean_std(values)[0] if values else None


def _mean_cells(e: dict, m: str, undefined: dict) -> list[str]:
    """An arm's mean ± std and 95% interval of metric ``m``, or that no run could define it."""
    if m in undefined:
        return ["undefined", "—"]
    return [fmt_spread(e["mean"].get(m), e["std"].get(m), e["n"]), fmt_ci(e.get("ci95", {}).get(m))]


def arms_rows(summary: dict) -> Table:
    metrics, undefined = overall_metrics(summary), summary.get("undefined_metrics") or {}
    primary = summary["primary_metric"]
    header = ["arm", "n", "fine-tune epochs"]
    for m in metrics:
        label = metric_label(m, summary)
        header += [f"test {label} (mean ± std)", f"{label} 95% CI"]
    header += [f"val {primary.upper()} (mean)", "pretext loss start → end", "s / run"]
    rows = []
    for arm, e in summary["arms"].items():
        epochs = e.get("finetune_epochs") or (summary.get("finetune", {}).get("epochs", "?") if e["n"] else "—")
        cells = [arm, str(e["n"]), str(epochs)]
        for m in metrics:
            cells += _mean_cells(e, m, undefined)
        pre = (f"{fmt_num(e['pretext_loss_start'], 4)} → {fmt_num(e['pretext_loss_end'], 4)}"
               if "pretext_loss_start" in e else "—")
        rows.append(cells + [fmt_num(val_mean(e, primary)), pre, fmt_num(e["seconds_mean"], 0)])
    return Table(header, rows)


def class_rows(summary: dict) -> Table:
    """Each arm's per-class metrics, one row per arm and class (empty without per-class metrics)."""
    found = [f for m in summary["metrics"] if (f := class_metric(m))]
    bases = list(dict.fromkeys(b for b, _ in found))
    classes = sorted({k for _, k in found})
    undefined = summary.get("undefined_metrics") or {}
    header = ["arm", "class"]
    for b in bases:
        header += [f"test {b.upper()} (mean ± std)", f"{b.upper()} 95% CI"]
    rows = []
    for arm, e in summary["arms"].items():
        for k in classes:
            rows.append([arm, class_name(k, summary),
                         *(c for b in bases for c in _mean_cells(e, f"{b}_{k}", undefined))])
    return Table(header, rows)


# A task's own figures (summary["figures"]): heading and caption.
FIGURE_TEXT = {
    EXAMPLES_FIGURE: ("Examples", "Test images (seed 0 of each arm): ground truth filled; predictions filled with the "
                                  "ground truth outlined in green."),
    ROC_FIGURE: ("ROC curves", "Test ROC curves, one line per seed (binary: of the positive-class score; several "
                               "classes: one-vs-rest over every image and class pooled, whose area can differ from "
                               "the reported AUC, the mean of the per-class AUCs)."),
}
SIGN_TEST_ALPHA = 0.05
# The fewest seeds at which the exact sign test can reach p < SIGN_TEST_ALPHA (6; 5 wins of 5 give 0.0625): below it
# a bootstrap interval over seeds is optimistic and nothing else can back it, so the reading says so.
FEW_SEEDS = next(n for n in itertools.count(1) if sign_test_p(n, 0) < SIGN_TEST_ALPHA)


def verdict(d: dict, who: str = "TPP", caveat: bool = True) -> str:
    """``who`` (the left side of the difference) better / worse when the paired 95% bootstrap interval excludes
    zero, else no clear difference; none for a metric that is undefined. ``caveat``: append to a better / worse
    reading the few-seeds warning, or that the exact sign test does not confirm it."""
    if d.get("undefined"):
        return "undefined: no verdict"
    lo, hi = d["ci95"]
    if d["n"] < 2 or is_missing(lo) or is_missing(hi):
        return "too few seeds to tell"
    text = f"{who} better" if lo > 0 else f"{who} worse" if hi < 0 else "no clear difference"
    if not caveat or text == "no clear difference":
        return text
    if d["n"] < FEW_SEEDS:
        return f"{text} (only {d['n']} seeds: weak)"
    if not is_missing(p := d.get("sign_test_p")) and p >= SIGN_TEST_ALPHA:
        return f"{text} (sign test p = {fmt_num(p, 2)}: not confirmed)"
    return text


def verdict_lines(summary: dict) -> list[str]:
    """One line per comparison of TPP with another arm on the primary metric: the reading, the interval, the wins."""
    primary = summary["primary_metric"]
    lines = []
    for name, per_metric in summary.get("paired", {}).items():
        d = per_metric.get(primary)
        if d is None:
            continue
        tpp, other = name.split("-", 1)
        if d.get("undefined"):
            lines.append(f"`{tpp}` vs `{other}`: no verdict: test {primary.upper()} is undefined ({d['undefined']})")
            continue
        text = reading = verdict(d, caveat=False)  # the few-seeds caveat follows, in full
        if d["n"] >= 2:
            text += (f": {tpp} − {other} {fmt_signed(d['mean'])} {primary.upper()}, 95% CI "
                     f"{fmt_ci(d['ci95'], signed=True)}, {tpp} better in {d['wins']} of {d['n']} seeds")
            if d["n"] < FEW_SEEDS:
                text += f" (with {d['n']} seeds the interval is optimistic: add seeds before claiming a difference)"
            elif reading != "no clear difference" and d.get("sign_test_p", 0.0) >= SIGN_TEST_ALPHA:
                text += f" (not confirmed by the exact sign test, p = {fmt_num(d['sign_test_p'], 2)})"
        lines.append(f"`{tpp}` vs `{other}`: {text}")
    return lines


def verdict_box(summary: dict) -> Box | None:
    lines = verdict_lines(summary)
    if not lines:
        return None
    return Box(f"Verdict on the primary metric ({summary['primary_metric'].upper()}, test, paired by seed)", lines)


def paired_cells(d: dict, who: str = "TPP") -> list[str]:
    """A paired difference's table cells: mean ± std, 95% interval, wins/ties/losses, sign test p, reading."""
    record = f"{d['wins']}/{d.get('ties', 0)}/{d.get('losses', d['n'] - d['wins'] - d.get('ties', 0))}"
    diff = f"{fmt_signed(d['mean'])} (n = 1)" if d["n"] == 1 else f"{fmt_signed(d['mean'])} ± {fmt_num(d['std'])}"
    return [diff, fmt_ci(d["ci95"], signed=True), record, fmt_num(d.get("sign_test_p"), 2), verdict(d, who)]


def paired_rows(summary: dict, metrics: list[str] | None = None) -> Table:
    rows = []
    for name, per_metric in summary.get("paired", {}).items():
        for m, d in per_metric.items():
            if metrics and m not in metrics:
                continue
            if d.get("undefined"):
                rows.append([name.replace("-", " − ", 1), metric_label(m, summary), "undefined", "—", "—", "—",
                             verdict(d)])
                continue
            rows.append([name.replace("-", " − ", 1), metric_label(m, summary), *paired_cells(d)])
    return Table(["comparison", "metric", "mean difference ± std", "95% bootstrap CI", "TPP wins/ties/losses",
                  "sign test p", "reading"], rows)


def seeds_rows(summary: dict) -> Table:
    metrics, undefined = overall_metrics(summary), summary.get("undefined_metrics") or {}
    rows = []
    for arm, e in summary["arms"].items():
        for r in e["runs"]:
            pre = r.get("pretext")
            pre_text = f"{fmt_num(pre['loss_start'], 4)} → {fmt_num(pre['loss_end'], 4)}" if pre else "—"
            tests = ("undefined" if m in undefined else fmt_num(r["test"].get(m)) for m in metrics)
            rows.append([arm, str(r["seed"]), *tests, str(r["best_epoch"]),
                         f"{r.get('target_params', 0):,}", pre_text, fmt_num(r["seconds"], 0)])
    return Table(["arm", "seed", *(f"test {metric_label(m, summary)}" for m in metrics), "best val epoch",
                  "trained parameters", "pretext loss start → end", "seconds"], rows)


def probed_runs(entry: dict) -> list[tuple[dict, dict]]:
    """An arm's runs whose TPP stage has a linear probe before and after, each with its ``pretext`` record."""
    return [(r, pre) for r in entry.get("runs", [])
            if (pre := r.get("pretext") or {}).get("probe_before") and pre.get("probe_after")]


def diagnostics_rows(summary: dict) -> Table:
    """Per TPP run: the linear probe of the frozen features before and after the stage, and how far the target
    parameters moved (empty when no run has a probe)."""
    rows = []
    for arm, e in summary["arms"].items():
        for r, pre in probed_runs(e):
            before, after = pre["probe_before"], pre["probe_after"]
            moved = pre.get("movement") or {}
            lora = moved.get("lora_update_ratio") or {}
            rows.append([arm, str(r["seed"]), before["metric"].upper(),
                         f"{fmt_num(before['test'])} → {fmt_num(after['test'])}",
                         fmt_signed(after["test"] - before["test"]),
                         f"{fmt_num(before['val'])} → {fmt_num(after['val'])}",
                         fmt_num(moved.get("relative_change"), 3), fmt_num(lora.get("mean"), 4)])
    return Table(["arm", "seed", "probe metric", "probe test: init → after TPP", "change",
                  "probe val: init → after TPP", "target parameters' relative change",
                  "LoRA ‖BA‖/‖W‖ (mean)"], rows)


def probe_counts_text(summary: dict) -> str | None:
    """Per arm with probes: in how many seeds the TPP stage raised the probe, on validation first (the split a
    user can act on) and on test, with the mean change."""
    parts = []
    for arm, e in summary["arms"].items():
        pairs = [(pre["probe_before"], pre["probe_after"]) for _, pre in probed_runs(e)]
        if not pairs:
            continue
        counts = []
        for split in ("val", "test"):
            changes = [a[split] - b[split] for b, a in pairs if not is_missing(a.get(split))
                       and not is_missing(b.get(split))]
            if changes:
                counts.append(f"on {'validation' if split == 'val' else 'test'} in {sum(d > 0 for d in changes)} "
                              f"of {len(changes)} seeds (mean change {fmt_signed(sum(changes) / len(changes))})")
        if counts:
            parts.append(f"`{arm}`: the TPP stage raised the probe {' and '.join(counts)}.")
    return " ".join(parts) or None


def data_text(summary: dict) -> str | None:
    """Few labels / more unlabelled images: what fine-tuning and the TPP stage each saw."""
    d = summary.get("data")
    if not d or (d.get("train") == (summary.get("split_sizes") or {}).get("train") and not d.get("pretext_sources")):
        return None
    if d.get("labelled_volumes"):
        budget = (f"the slices of {d['labelled_volumes']} labelled training volumes ({d['label_fraction']:.0%} of "
                  f"them, drawn per seed, the same in every arm; {d['train']:,} slices in seed 0)")
    else:
        budget = (f"a labelled subset of {d['train']:,} training images "
                  + (f"({d['label_fraction']:.0%} per class, " if d.get("label_fraction") else
                     f"({d['labels_per_class']} per class, " if d.get("labels_per_class") else "(")
                  + "drawn per seed, the same in every arm)")
    extra = sum(s.get("images", 0) for s in d.get("pretext_sources") or [])
    twice = sum(s.get("also_in_train", 0) for s in d.get("pretext_sources") or [])
    left = sum(s.get("left_out_train_copies", 0) for s in d.get("pretext_sources") or [])
    return (f"Fine-tuning saw {budget}; the TPP stage saw {d['pretext_train']:,} unlabelled images"
            + (f", {extra:,} of them from pretext.data" if extra else "")
            + (f" ({twice:,} of those are training images of the run's own file too: seen twice per epoch)"
               if twice else "")
            + (f" ({left:,} copies of the run's training images in pretext.data left out)" if left else "") + ".")


def in_words(parts: list[str]) -> str:
    """``["a", "b", "c"]`` as "a, b and c"."""
    return ", ".join(parts[:-1]) + f" and {parts[-1]}" if len(parts) > 1 else "".join(parts)


def _pairs_text(counts: dict[str, int], sizes: dict[str, int], one: str, many: str) -> str:
    """``{"test in train": 2}`` as "2 of the 156 test images <many>" (``{earlier}`` in ``one``/``many`` filled)."""
    parts = []
    for pair, n in counts.items():
        later, earlier = pair.split(" in ")
        if n:
            parts.append(f"{n:,} of the {sizes.get(later, 0):,} {later} images "
                         + (one if n == 1 else many).format(earlier=earlier))
    return in_words(parts)


def split_copies_text(copies: dict[str, int], sizes: dict[str, int], near: dict | None = None) -> str:
    """The images of one split that are copies (``data.split_copies``) or near-twins (``data.split_near_copies``)
    of another split's, as a sentence."""
    exact = _pairs_text(copies, sizes, "is a copy of a {earlier} image", "are copies of {earlier} images")
    twins = _pairs_text((near or {}).get("counts") or {}, sizes, "has a near-twin among the {earlier} images",
                        "have a near-twin among the {earlier} images")
    parts = ([f"{exact}, pixel for pixel at the model's input size"] if exact else []) + (
        [f"{twins} (near-twins: 32x32 grey thumbnails correlating at {near['min_correlation']} or more, as the same "
         "picture shifted, re-marked or re-encoded, or a neighbouring frame or slice, are; exact copies included)"]
        if twins else [])
    text = "; ".join(parts)
    return (text[:1].upper() + text[1:] + ": the splits are not independent, so scores on those images count them "
            "as unseen (the data's own split; tppeft keeps it as it is).")


def copies_between_splits(data: dict) -> bool:
    """``data`` (summary.json's) records an image of one split that is a copy or near-twin of another split's."""
    near = (data.get("split_near_copies") or {}).get("counts") or {}
    return any((data.get("split_copies") or {}).values()) or any(near.values())


def _split_copies_para(summary: dict) -> str | None:
    d = summary.get("data") or {}
    if not copies_between_splits(d):
        return None
    return split_copies_text(d.get("split_copies") or {}, summary.get("split_sizes") or {}, d.get("split_near_copies"))


def _paired_text(summary: dict, key: str, split: str, test: str = "test") -> tuple[list[str], list[str]] | None:
    """The primary metric's paired differences in ``summary[key]`` as phrases, and the comparisons whose reading
    differs from test's (``split`` and ``test`` name the two in them); None without any."""
    primary, table = summary["primary_metric"], summary.get(key) or {}
    parts, disagree = [], []
    for name, per_metric in table.items():
        d = per_metric.get(primary)
        if not d or d["n"] < 2:
            continue
        shown = name.replace("-", " − ", 1)
        parts.append(f"{shown} {fmt_signed(d['mean'])} {fmt_ci(d['ci95'], signed=True)}, "
                     f"{name.split('-')[0]} better in {d['wins']} of {d['n']}")
        whole = (summary.get("paired", {}).get(name) or {}).get(primary)
        if whole and not whole.get("undefined") and verdict(whole, caveat=False) != verdict(d, caveat=False):
            disagree.append(f"{shown} ({verdict(d)} on {split}, {verdict(whole)} on {test})")
    return (parts, disagree) if parts else None


def validation_text(summary: dict) -> str | None:
    """The paired differences of the primary metric on validation, the split settings are chosen on, and where
    its reading differs from test's (None for a summary without them)."""
    if (found := _paired_text(summary, "paired_val", "validation")) is None:
        return None
    parts, disagree = found
    text = (f"On validation, the split settings are chosen on (each run at its selected epoch), "
            f"{summary['primary_metric'].upper()}: " + "; ".join(parts) + ".")
    if disagree:
        text += (" Validation and test read differently for " + ", ".join(disagree) + ": a setting chosen on "
                 "validation would not have been chosen for a difference that only test shows.")
    return text


def _test_part_text(summary: dict, key: str, images: str, why: str, changed: str) -> str | None:
    """The paired differences of the primary metric on a part of the test split (``summary[key]``), and where its
    reading differs from the whole split's."""
    if (found := _paired_text(summary, key, "those images", "the whole test split")) is None:
        return None
    parts, disagree = found
    text = f"On {images} ({why}), {summary['primary_metric'].upper()}: " + "; ".join(parts) + "."
    if disagree:
        text += (f" {changed} the reading changes for " + ", ".join(disagree) + ": read the whole split's verdict "
                 "with that in mind.")
    return text


def without_twin_text(summary: dict) -> str | None:
    """The paired differences on the test images without a near-twin among the training images (which a TPP stage
    sees, unlabelled), and where their reading differs from the whole split's."""
    n = ((summary.get("data") or {}).get("split_near_copies") or {}).get("test_without_twin_in_train")
    return _test_part_text(summary, "paired_without_twin",
                           f"{f'the {n:,}' if n else 'the'} test images without a near-twin among the training images",
                           "the TPP stage saw every training image, so a gain could come from test images whose twin "
                           "it saw", "Without the twins")


def unseen_by_backbone_text(summary: dict) -> str | None:
    """The paired differences on the test images the backbone's pre-training pool did not hold, where it held
    some, and where their reading differs from the whole split's."""
    seen, n = (summary.get("backbone_saw_images") or {}).get("test") or (None, None)
    images = f"the {n - seen:,} of {n:,} test images" if n else "the test images"
    return _test_part_text(summary, "paired_unseen_by_backbone", f"{images} the backbone never saw in pre-training",
                           "it saw the others, unlabelled, so a gain could come from images it knew",
                           "On the images it never saw")


def per_class_text(summary: dict) -> str | None:
    """Where the primary metric has per-class terms (``auc_<k>``, ``dice_<k>``) and a comparison reads differently
    on different classes: which classes TPP is better, worse or not clearly different on. None where they agree
    (the paired table shows them), with fewer than :data:`FEW_SEEDS` seeds, or without per-class terms."""
    primary = summary["primary_metric"]
    each = [m for m in summary["metrics"] if (found := class_metric(m)) and found[0] == primary]
    sentences = []
    for name, per_metric in summary.get("paired", {}).items():
        by_reading: dict[str, list[str]] = {}
        for m in each:
            d = per_metric.get(m)
            if d and not d.get("undefined") and d["n"] >= FEW_SEEDS:  # fewer cannot tell classes apart
                tpp = name.split("-")[0]
                by_reading.setdefault(verdict(d, who=tpp), []).append(
                    f"{class_name(class_metric(m)[1], summary)} ({fmt_signed(d['mean'])}, {tpp} better in "
                    f"{d['wins']} of {d['n']})")
        if len(by_reading) > 1:
            sentences.append(f"{name.replace('-', ' − ', 1)}: " + "; ".join(
                f"{reading} for {', '.join(classes)}" for reading, classes in by_reading.items()))
    if not sentences:
        return None
    return (f"By class ({primary.upper()} of each class, paired by seed), the comparisons read differently on "
            "different classes: " + ". ".join(sentences) + f". The {primary.upper()} of the whole split is their mean "
            "and hides this; which classes a gain lies on can decide whether it matters for a question.")


def class_blocks(summary: dict) -> list[Block]:
    """The "By class" section: each arm's per-class metrics, their paired differences and where the comparisons
    read differently on different classes; none without per-class metrics."""
    arms = class_rows(summary)
    if not arms.rows:
        return []
    blocks: list[Block] = [Heading("By class"), arms]
    paired = paired_rows(summary, [m for m in summary["metrics"] if class_metric(m)])
    if paired.rows:
        blocks.append(paired)
    if text := per_class_text(summary):
        blocks.append(Para(text))
    return blocks


SMALL_VALIDATION = 100  # below this many validation images the selected epoch's validation score is noisy


def _validation_size_text(summary: dict) -> str:
    """With few validation images: the validation scores chose the epoch, so they flatter every arm."""
    n = (summary.get("split_sizes") or {}).get("val")
    if not n or n >= SMALL_VALIDATION:
        return ""
    return (f" With {n} validation images the validation scores are optimistic (they chose the epoch they report) "
            "and differences between arms on them can be far from the test differences (in the BreastMNIST SimCLR "
            "validity study, 78 validation images, validation favoured TPP in all 8 seeds while test tied).")


# Kept for callers that print the tables: Markdown text of each.
def arms_table(summary: dict) -> str:
    return table_markdown(arms_rows(summary))


def paired_table(summary: dict) -> str:
    """The console's paired differences: the whole split's metrics (each class's are in the report's "By class")."""
    overall = overall_metrics(summary)
    table = paired_rows(summary, overall)
    if not table.rows:
        return ""
    by_class = len(overall) < len(summary["metrics"])
    return table_markdown(table) + ("\n\nEach class's paired differences: report.md, \"By class\"." if by_class else "")


def problems(summary: dict) -> list[str]:
    """Metrics no run could define, runs left out of the statistics or trained with skipped updates, and the
    TPP stages' warnings, one line each."""
    undefined = summary.get("undefined_metrics") or {}
    lines = [f"- test {metric_label(m, summary)} is undefined in every run: {reason}. It has no mean, spread or "
             "interval, and is left out of the paired differences and the verdict." for m, reason in undefined.items()]
    for arm, e in summary["arms"].items():
        for f in e.get("failed", []):
            lines.append(f"- {arm} seed {f['seed']} FAILED and is left out of every statistic: {f['error']}")
        for m, seeds in e.get("nonfinite", {}).items():
            if m in undefined:
                continue
            lines.append(f"- {arm}: test {metric_label(m, summary)} is undefined (NaN) for seed(s) {seeds}; left "
                         "out of its mean")
        for seed, n in e.get("skipped_steps", {}).items():
            lines.append(f"- {arm} seed {seed}: {n} update(s) skipped for a non-finite loss or gradient")
        warned: dict[str, list[int]] = {}  # one line per warning: a stage shared by every seed warns once
        for r in e.get("runs", []):
            if warning := (r.get("pretext") or {}).get("warning"):
                warned.setdefault(warning, []).append(r["seed"])
        for warning, seeds in warned.items():
            lines.append(f"- {arm}, the TPP stage of seed(s) {', '.join(map(str, seeds))}: {warning}.")
    return lines


def interim_line(summary: dict) -> str | None:
    """For a comparison not finished yet (``tppeft report`` while it runs): how many of its runs the numbers hold."""
    if (interim := summary.get("interim")) is None:
        return None
    seeds, by_arm = len(summary["seeds"]), interim["by_arm"]
    arms = ", ".join(f"{arm} {n} of {seeds}" for arm, n in by_arm.items())
    return (f"INTERIM: {sum(by_arm.values())} of {seeds * len(by_arm)} runs finished ({arms}). These numbers are "
            "those runs' and change as the others finish; the comparison writes summary.json and its report when all "
            "have (resume a stopped one with tppeft run --resume).")


def comparison_text(summary: dict) -> str:
    """The short console table: arms, paired differences, any problems, the budget checks, and the verdict last;
    an unfinished comparison's says so first and last (and only that, before its first run finishes)."""
    if (line := interim_line(summary)) and not any(summary["interim"]["by_arm"].values()):
        return line
    parts = [arms_table(summary)]
    if summary.get("paired"):
        parts.append(paired_table(summary))
    if problems(summary):
        parts.append("Problems:\n" + "\n".join(problems(summary)))
    if budget_lines(summary):
        parts.append(f"{BUDGET_TITLE}:\n" + "\n".join(f"- {line.replace('`', '')}" for line in budget_lines(summary)))
    parts += [t.replace("`", "") for t in (unmatched_compute_line(summary), matched_below_line(summary)) if t]
    if verdict_lines(summary):  # last, where the eye lands
        parts.append(f"Verdict ({summary['primary_metric'].upper()}, primary):\n"
                     + "\n".join(f"- {line.replace('`', '')}" for line in verdict_lines(summary)))
    if line := interim_line(summary):
        parts = [line, *parts, line]
    return "\n\n".join(parts)


def _target_text(summary: dict) -> str:
    peft, tp = summary.get("peft", {}), summary.get("target_params") or {}
    text = f"`{peft.get('method')}`"
    if peft.get("method") in ("lora", "loha", "lokr"):
        text += f" r={peft.get('r')} on {peft.get('targets')}"
    if tp.get("count") is not None:
        text += (f", {tp['count']:,} parameters ({fmt_num(tp.get('percent'), 2)}% of the backbone's "
                 f"{tp['backbone_params']:,})")
    return text


def _setup_text(summary: dict) -> str:
    b = summary.get("backbone", {})
    pre, ft = summary.get("pretext", {}), summary.get("finetune", {})
    names = summary.get("class_names")
    word = "labels" if summary.get("labels") == "multilabel" else "classes"
    classes = f"{summary.get('num_classes')} {word}" + (f" ({', '.join(names)})" if names else "")
    if groups := (summary.get("data") or {}).get("merge_classes"):
        classes += f", the data's own merged by `data.merge_classes` ({groups_text(groups)})"
    return (f"Task: {summary.get('task')} with {classes}; splits "
            f"{splits_text(summary.get('split_sizes'))}. "
            f"Backbone: `{b.get('name')}` from `{b.get('checkpoint') or 'timm'}`. "
            f"Target parameters: {_target_text(summary)}. "
            f"Pretext: `{pre.get('method')}`, {pre.get('epochs')} epochs, lr {pre.get('lr')}. "
            f"Fine-tuning: {ft.get('epochs')} epochs, lr {ft.get('lr')}, model selection on validation "
            f"{ft.get('select_metric')}. Seeds: {summary.get('seeds')} (paired across arms{_added_text(summary)}). "
            f"Device: {summary.get('device')}{_arithmetic_text(summary)}; {_wall_text(summary)}."
            f"{_revision_text(summary)}")


def _revision_text(summary: dict) -> str:
    """The tppeft version and the source commit(s) the runs were made from (none outside a git checkout)."""
    def commit(c: str) -> str:
        return f"`{c[:12]}`" + (" with uncommitted changes" if c.endswith(DIRTY) else "")

    made = summary.get("revision") or []
    text = f" Code: tppeft {summary.get('tppeft_version', '?')}"
    if len(made) == 1:
        return f"{text}, commit {commit(made[0]['commit'])}."
    if len(made) > 1:
        each = "; ".join(f"{commit(r['commit'])}: {len(r['runs'])} run(s)" for r in made)
        return f"{text}; the runs were made from {len(made)} revisions of the code ({each})."
    return f"{text}."


def _arithmetic_text(summary: dict) -> str:
    """The processor or GPU (and torch) the runs were made on; several kinds said plainly (older summaries name
    none)."""
    def kind(a: dict) -> str:
        where = a["gpu"] + (f", CUDA {a['cuda']}" if a.get("cuda") else "") if a.get("gpu") else (
            f"{a.get('cpu')}, {a.get('cpu_capability')}")
        return f"{where}, torch {a.get('torch')}"

    kinds = summary.get("arithmetic") or []
    if len(kinds) == 1:
        return f" ({kind(kinds[0])})"
    if len(kinds) > 1:
        each = "; ".join(f"{kind(a)}: {len(a['runs'])} run(s)" for a in kinds)
        return (f"; the runs were made on {len(kinds)} kinds of machine ({each}), so runs of one seed in different "
                "arms may differ by float rounding as well as by arm")
    return ""


def _added_text(summary: dict) -> str:
    """When seeds were added to a finished comparison (``--resume --set seeds=N``): which, and to how many; and
    the runs made again (``--resume --redo``)."""
    def which(a: dict) -> str:
        return f"seed {a['from']}" if a["to"] - a["from"] == 1 else f"seeds {a['from']}–{a['to'] - 1}"

    added = "".join(f"; {which(a)} added later to the {a['from']} before" for a in summary.get("seeds_added") or [])
    redone = summary.get("redone")
    return added + (f"; made again with `--redo`: {', '.join(redone)}" if redone else "")


def _wall_text(summary: dict) -> str:
    """The wall time (of a resumed comparison, of its last stretch only, and its runs' own times, which count
    across the interruptions); of a merge, its parts' (which may have run at once or one after another)."""
    parts = [w for w in summary.get("job_wall_seconds") or [] if w is not None]
    if not parts:
        jobs = summary.get("jobs")
        text = f"wall time {fmt_num(summary.get('wall_seconds'), 0)} s" + (
            " since it was last resumed" if summary.get("resumed") else "") + (
            f" ({jobs} runs at a time)" if jobs else "")
        if summary.get("resumed"):
            own = [r["seconds"] for e in summary.get("arms", {}).values() for r in e.get("runs", [])
                   if r.get("seconds") is not None]
            text += f"; the runs' own times, across the interruptions, add up to {fmt_num(sum(own), 0)} s"
        return text
    return (f"merged from {len(summary['job_wall_seconds'])} jobs: {fmt_num(max(parts), 0)} s for the longest, "
            f"{fmt_num(sum(parts), 0)} s for all of them together")


def _backbone_text(summary: dict) -> str | None:
    b = summary.get("backbone", {})
    seen = b.get("trained_on")
    if not seen:
        return None
    text = f"The backbone was pre-trained on: {pool_text(seen)}."
    overlap, named = summary.get("backbone_saw_this_data"), _seen_by_name(summary)
    images = summary.get("backbone_saw_images")
    if overlap:
        text += (f" It saw the {', '.join(overlap)} split(s) of this very data file, so a pretext task on those "
                 "images has less left to teach.")
    if images:
        seen = any_seen(images)
        ending = ("." if overlap else ": read the comparison as one on images the backbone has seen, unlabelled."
                  if seen else f"; but by name, {', '.join(named)} is this data set, so its images may be there "
                  "resized or scaled otherwise, which this check cannot find." if named
                  else " (a copy resized or re-encoded differently would not be found).")
        keyed = (b.get("pool_keys") or {}).get("note")  # what the keys cover, where the backbone's record says
        text += (f" Checked image by image (pixel for pixel at {images['image_size']} px"
                 f"{f'; its keys: {keyed}' if keyed else ''}), its pre-training pool holds "
                 f"{seen_images_text(images)} images of this data{ending}")
    elif named and not overlap:
        text += (f" By name, {', '.join(named)} is this data set: read the comparison as one on images the backbone "
                 "has seen, unlabelled (the metadata cannot say which images or splits).")
    elif not overlap:
        text += " None of them is this data set: the backbone never saw these images (as far as its metadata says)."
    return text


def _seen_by_name(summary: dict) -> list[str]:
    return seen_by_name(summary.get("backbone") or {}, summary.get("dataset") or "")


def _split_counts(images: dict) -> dict[str, list[int]]:
    """``backbone_saw_images`` without its ``image_size``: [seen, images] by split."""
    return {k: v for k, v in images.items() if k != "image_size"}


def any_seen(images: dict) -> bool:
    """``backbone_saw_images`` holds at least one image the backbone saw."""
    return any(seen for seen, _ in _split_counts(images).values())


def seen_images_text(images: dict) -> str:
    """``backbone_saw_images`` as words: "546 of 546 train, 0 of 78 val and 0 of 156 test"."""
    parts = [f"{seen:,} of {n:,} {k}" for k, (seen, n) in _split_counts(images).items()]
    return in_words(parts)


def saw_the_data(summary: dict) -> str:
    """Whether the backbone saw this data in pre-training, as its metadata tells: the splits (by checksum), the
    splits' images it saw (image by image), "yes, by name", "no" or "unknown" (the metadata does not list its
    pre-training data)."""
    if summary.get("backbone_saw_this_data"):
        return "yes: " + ", ".join(summary["backbone_saw_this_data"])
    if images := summary.get("backbone_saw_images"):
        seen = [f"{k} {seen:,} of {n:,}" for k, (seen, n) in _split_counts(images).items() if seen]
        if seen:
            return "yes: " + ", ".join(seen) + " images"
        return "by name only (no image matches)" if _seen_by_name(summary) else "no (image by image)"
    if _seen_by_name(summary):
        return "yes, by name"
    return "no" if (summary.get("backbone") or {}).get("trained_on") else "unknown"


def _heads_text(summary: dict) -> str | None:
    """Where the backbone's checkpoint and each TPP arm's pretext head came from."""
    prov = summary.get("backbone_provenance") or {}
    heads = {arm: e["pretext_head"] for arm, e in summary.get("arms", {}).items() if e.get("pretext_head")}
    if not prov and not heads:
        return None
    text = (f"Checkpoint layout: {prov.get('layout')} ({prov.get('family')} family); input normalisation from "
            f"{prov.get('normalisation')}." if prov else "")
    if heads:
        text += " Pretext heads: " + "; ".join(f"`{arm}` {head}" for arm, head in heads.items()) + "."
    return text.strip()


def _matched_text(summary: dict) -> str | None:
    m = summary.get("baseline_matched")
    if not m:
        return None
    ft = summary.get("finetune", {}).get("epochs")
    extra = extra_epochs_text((m.get("extra_epochs_per_seed") or {}).values() or [m["extra_epochs"]])
    if m.get("tpp_stage_in_finetune_epochs") is None:
        return f"`baseline_matched`: {ft} + {extra} fine-tuning epochs ({m.get('rule')})."
    shared = m.get("stage_shared_by", 1)
    ran = ("This comparison itself ran a stage for every `tpp` run." if _shared_stage_seed(summary) is None else
           "This comparison took its one stage, made before, from `pretext.stage_from`."
           if (summary.get("pretext") or {}).get("stage_from") else
           "This comparison itself ran one stage for all its `tpp` runs (`pretext.stage_seed`).")
    share = (f"; shared by {shared} fine-tuning runs (`baseline_matched.stage_shared_by`: one stage reused {shared} "
             f"times), that is {m['tpp_stage_in_finetune_epochs'] / shared:.2f} epochs each, rounded up. {ran}"
             if shared > 1 else ", rounded up.")
    return (f"`baseline_matched`: {ft} + {extra} fine-tuning epochs. The TPP stage costs "
            f"{m['tpp_stage_in_finetune_epochs']:.2f} fine-tuning epochs of training compute "
            f"({m['pretext_flops_per_image_step'] / 1e6:.1f} vs {m['finetune_flops_per_image_step'] / 1e6:.1f} "
            f"MFLOPs per image and step, forward + backward, counted){share}")


def _shared_stage_seed(summary: dict) -> int | None:
    """``pretext.stage_seed`` of a comparison whose TPP arms fine-tuned from one shared stage (None: a stage per
    run, or no TPP arm)."""
    seed = (summary.get("pretext") or {}).get("stage_seed")
    has_tpp = any((r.get("pretext") or {}).get("shared") for e in summary["arms"].values() for r in e["runs"])
    return seed if has_tpp else None


def _stage_text(summary: dict) -> str | None:
    seed = _shared_stage_seed(summary)
    if seed is None:
        return None
    source = (summary.get("pretext") or {}).get("stage_from")
    made = (f"made before with seed {seed} and taken from {source} (`pretext.stage_from`; its held-out pretext "
            "losses are from there, its linear probe and movement measured here)" if source else
            f"made with seed {seed} (`pretext.stage_seed`, in `runs/<arm>/stage`)")
    return (f"One TPP stage, {made}, served every seed's TPP run: its diagnostics are that one stage's, and the "
            "paired intervals cover the fine-tuning seeds and label draws, not the variation between stages.")


def figure_runs_text(summary: dict) -> str | None:
    """A merged folder some of whose runs came from a kept result folder (summary only): its training and ROC
    curves show the other runs alone."""
    runs = summary.get("figure_runs")
    if runs is None:
        return None
    shown = "; ".join(f"`{arm}` seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"
                      for arm, seeds in runs.items()) or "none"
    return ("The training curves and ROC curves show only the runs whose files this folder holds "
            f"({shown}); the other runs came from a kept result folder, which keeps their numbers, not their files.")


def build_blocks(summary: dict, plots: dict[str, Path] | None = None, run_dir: Path | None = None) -> list[Block]:
    primary = summary["primary_metric"]
    blocks: list[Block] = [Heading(f"TPP comparison on {summary.get('dataset', '?')}", 1)]
    box = verdict_box(summary)
    if box:
        blocks.append(box)
    if budget_lines(summary):
        blocks.append(Box(BUDGET_TITLE, budget_lines(summary)))
    blocks += [Para(t) for t in (unmatched_compute_line(summary), matched_below_line(summary)) if t]
    blocks.append(Para(_setup_text(summary)))
    blocks += [Para(t) for t in (data_text(summary), _split_copies_para(summary), _backbone_text(summary),
                                 _heads_text(summary), _stage_text(summary), _matched_text(summary)) if t]
    blocks += [Heading("Test metrics"), arms_rows(summary),
               Para("mean ± sample std over seeds; the 95% interval is a percentile bootstrap of the mean over seeds. "
                    "The validation column (each run at its selected epoch) is what to choose settings on; the "
                    "test columns are for reporting only." + _validation_size_text(summary))]
    if summary.get("metric_note"):
        blocks.append(Para(summary["metric_note"]))
    if plots and plots.get("metric"):
        blocks.append(Image(plots["metric"], f"test {primary} per arm: one dot per seed, mean with its 95% interval"))
    paired = paired_rows(summary, overall_metrics(summary))
    if paired.rows:
        blocks += [Heading(f"Paired differences (primary metric: {primary.upper()})"), paired]
        if plots and plots.get("paired"):
            blocks.append(Image(plots["paired"], "paired differences: one dot per seed, mean with its 95% interval"))
        blocks.append(Para("TPP minus each other arm, seed by seed. A difference is read as real only when its 95% "
                           "bootstrap interval excludes zero. With few seeds that interval is too narrow (it cannot "
                           "reach beyond the observed differences) and the exact sign test is weak (5 wins out of 5 "
                           "give p = 0.06): treat one table as a first look and add seeds before claiming a gain."))
        blocks += [Para(t) for t in (validation_text(summary), without_twin_text(summary),
                                      unseen_by_backbone_text(summary)) if t]
    blocks += class_blocks(summary)
    if problems(summary):
        blocks += [Heading("Problems"), *(Para(line[2:]) for line in problems(summary))]
    diagnostics = diagnostics_rows(summary)
    if diagnostics.rows:
        blocks += [Heading("Did the TPP stage improve the features before any label?"), diagnostics,
                   Para("A linear probe (logistic regression on the frozen class and mean patch tokens, C chosen on "
                        "validation, fitted on the labelled training images fine-tuning sees) of the target "
                        "parameters at initialisation and after the TPP stage. A probe that does not move says the "
                        "pretext stage changed the features little in a way a linear read-out can use; one that "
                        "rises does not forecast a gain after fine-tuning (in the validity studies a rise on "
                        "validation ranked TPP's gain only loosely): the paired differences above decide.")]
        if counts := probe_counts_text(summary):
            blocks.append(Para(counts))
    if plots and plots.get("curves"):
        blocks += [Heading("Training curves"), Image(plots["curves"], "loss curves of both stages")]
    if figure_runs_text(summary):
        blocks.append(Para(figure_runs_text(summary)))
    blocks += [Heading("Per seed"), seeds_rows(summary),
               Para("Pretext losses are measured on the validation images with fixed masks, before and after the "
                    "TPP stage. Every run checked that the backbone's own weights were bit-identical at its end "
                    "(for `full_finetune`, which trains a copy, that the shared backbone was).")]
    for fig in summary.get("figures") or []:
        heading, text = FIGURE_TEXT.get(fig, ("Figure", ""))
        blocks += [Heading(heading), *([Para(text)] if text else []),
                   Image(RunFolder(run_dir).figure(fig) if run_dir else Path(fig), heading.lower())]
    return blocks


def render(summary: dict, plots: dict[str, Path] | None = None) -> str:
    return to_markdown(build_blocks(summary, plots))


def write_report(run_dir: Path) -> Path:
    """Write report.md, report.html, metric_by_arm.png and loss_curves.png into ``run_dir``; returns report.md."""
    from tppeft.reporting.plots import write_plots

    folder = RunFolder(run_dir)
    summary = load_summary(folder.root)
    plots = write_plots(folder.root, summary)
    blocks = build_blocks(summary, plots, folder.root)
    write_text(folder.report_md, to_markdown(blocks))
    write_text(folder.report_html, to_html(blocks, f"TPP comparison on {summary.get('dataset', '?')}"))
    return folder.report_md
