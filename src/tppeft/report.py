"""report.md from a run folder's summary.json (never from live objects), so it can be rebuilt any time."""

from __future__ import annotations

import json
import math
from pathlib import Path

from tppeft.engine.outputs import write_text


def fmt(v: float | None, digits: int = 3) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def fmt_signed(v: float | None, digits: int = 3) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:+.{digits}f}"


def arms_table(summary: dict) -> str:
    metrics = summary["metrics"]
    head = "| arm | n | " + " | ".join(f"test {m.upper()} (mean ± std)" for m in metrics)
    head += " | pretext loss start → end | s / run |"
    rows = [head, "|" + "---|" * (len(metrics) + 4)]
    for arm, e in summary["arms"].items():
        cells = [f"{fmt(e['mean'].get(m))} ± {fmt(e['std'].get(m))}" for m in metrics]
        pre = (f"{fmt(e['pretext_loss_start'], 4)} → {fmt(e['pretext_loss_end'], 4)}"
               if "pretext_loss_start" in e else "—")
        rows.append(f"| {arm} | {e['n']} | " + " | ".join(cells) + f" | {pre} | {fmt(e['seconds_mean'], 0)} |")
    return "\n".join(rows)


def verdict(d: dict) -> str:
    lo, hi = d["ci95"]
    if d["n"] < 2 or lo is None or hi is None:
        return "too few seeds to tell"
    if lo > 0:
        return "TPP better"
    if hi < 0:
        return "TPP worse"
    return "no clear difference"


def paired_table(summary: dict) -> str:
    rows = ["| comparison | metric | mean difference ± std | 95% bootstrap CI | TPP wins | reading |",
            "|---|---|---|---|---|---|"]
    for name, per_metric in summary.get("paired", {}).items():
        for m, d in per_metric.items():
            ci = f"[{fmt_signed(d['ci95'][0])}, {fmt_signed(d['ci95'][1])}]"
            rows.append(f"| {name.replace('-', ' − ')} | {m.upper()} | {fmt_signed(d['mean'])} ± {fmt(d['std'])} | "
                        f"{ci} | {d['wins']}/{d['n']} | {verdict(d)} |")
    return "\n".join(rows) if len(rows) > 2 else ""


def seeds_table(summary: dict) -> str:
    metrics = summary["metrics"]
    rows = ["| arm | seed | " + " | ".join(f"test {m.upper()}" for m in metrics)
            + " | best val epoch | pretext loss start → end | seconds |",
            "|" + "---|" * (len(metrics) + 5)]
    for arm, e in summary["arms"].items():
        for r in e["runs"]:
            pre = r.get("pretext")
            pre_text = f"{fmt(pre['loss_start'], 4)} → {fmt(pre['loss_end'], 4)}" if pre else "—"
            rows.append(f"| {arm} | {r['seed']} | " + " | ".join(fmt(r["test"].get(m)) for m in metrics)
                        + f" | {r['best_epoch']} | {pre_text} | {fmt(r['seconds'], 0)} |")
    return "\n".join(rows)


def problems(summary: dict) -> list[str]:
    """Runs left out of the statistics or trained with skipped updates, one line each."""
    lines = []
    for arm, e in summary["arms"].items():
        for f in e.get("failed", []):
            lines.append(f"- {arm} seed {f['seed']} FAILED and is left out of every statistic: {f['error']}")
        for m, seeds in e.get("nonfinite", {}).items():
            lines.append(f"- {arm}: test {m.upper()} is undefined (NaN) for seed(s) {seeds}; left out of its mean")
        for seed, n in e.get("skipped_steps", {}).items():
            lines.append(f"- {arm} seed {seed}: {n} update(s) skipped for a non-finite loss or gradient")
    return lines


def comparison_text(summary: dict) -> str:
    """The short console table: arms, then paired differences, then any problems."""
    parts = [arms_table(summary)]
    if summary.get("paired"):
        parts.append(paired_table(summary))
    if problems(summary):
        parts.append("Problems:\n" + "\n".join(problems(summary)))
    return "\n\n".join(parts)


def _target_text(summary: dict) -> str:
    peft, tp = summary.get("peft", {}), summary.get("target_params") or {}
    text = f"`{peft.get('method')}`"
    if peft.get("method") in ("lora", "loha", "lokr"):
        text += f" r={peft.get('r')} on {peft.get('targets')}"
    if tp.get("count") is not None:
        text += (f", {tp['count']:,} parameters ({fmt(tp.get('percent'), 2)}% of the backbone's "
                 f"{tp['backbone_params']:,})")
    return text


def render(summary: dict) -> str:
    primary = summary["primary_metric"]
    b = summary.get("backbone", {})
    pre, ft = summary.get("pretext", {}), summary.get("finetune", {})
    lines = [
        f"# TPP comparison on {summary.get('dataset', '?')}",
        "",
        f"Task: {summary.get('task')} with {summary.get('num_classes')} classes; splits "
        f"{summary.get('split_sizes')}. Backbone: `{b.get('name')}` from `{b.get('checkpoint') or 'timm'}`. "
        f"Target parameters: {_target_text(summary)}. "
        f"Pretext: `{pre.get('method')}`, {pre.get('epochs')} epochs, lr {pre.get('lr')}. "
        f"Fine-tuning: {ft.get('epochs')} epochs, lr {ft.get('lr')}, model selection on validation "
        f"{ft.get('select_metric')}. Seeds: {summary.get('seeds')} (paired across arms). "
        f"Device: {summary.get('device')}; wall time {fmt(summary.get('wall_seconds'), 0)} s.",
        "",
        "## Test metrics",
        "",
        arms_table(summary),
        "",
    ]
    if summary.get("metric_note"):
        lines += [summary["metric_note"], ""]
    if summary.get("paired"):
        lines += [
            f"## Paired differences (primary metric: {primary.upper()})",
            "",
            paired_table(summary),
            "",
            "A difference is read as real only when its 95% bootstrap interval over seeds excludes zero; with "
            "few seeds the interval is optimistic, so treat a single run of this table as a first look.",
            "",
        ]
    if problems(summary):
        lines += ["## Problems", "", *problems(summary), ""]
    lines += ["## Per seed", "", seeds_table(summary), "",
              "Pretext losses are measured on the validation images with fixed masks, before and after the "
              "TPP stage. Every run checked that the backbone's own weights were bit-identical at its end.", ""]
    for fig in summary.get("figures") or []:
        lines += ["## Examples", "",
                  "Test images (seed 0 of each arm): ground truth filled; predictions filled with the ground "
                  "truth outlined in green.", "", f"![examples]({fig})", ""]
    return "\n".join(lines)


def write_report(run_dir: Path) -> Path:
    summary = json.loads((Path(run_dir) / "summary.json").read_text())
    path = Path(run_dir) / "report.md"
    write_text(path, render(summary))
    return path
