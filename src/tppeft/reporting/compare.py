"""Merge several run folders into one table: arms down, runs across (``tppeft compare``).

Built from each folder's summary.json. A run is labelled by its dataset and folder name; the paired
differences come from each run's own summary, and ``pair_specs`` (``--pair N:ARM,M:ARM``) add seed-paired differences
between any two arms, also of two runs whose seeds saw the same images (:mod:`tppeft.reporting.across`).
"""

from __future__ import annotations

from pathlib import Path

from tppeft.reporting.across import across_blocks
from tppeft.reporting.document import Block, Heading, Para, Table, to_html, to_markdown
from tppeft.reporting.report import (
    ReportError,
    class_metric,
    fmt_ci,
    fmt_num,
    fmt_signed,
    load_summary,
    metric_label,
    verdict,
)


def run_label(run_dir: Path, summary: dict) -> str:
    return f"{summary.get('dataset', '?')} ({Path(run_dir).resolve().name})"


def _unique(labels: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label} #{seen[label]}")
    return out


def compare_blocks(run_dirs: list[Path], pair_specs: list[str] | None = None,
                   defaults: dict | None = None, by_labels: bool = False) -> list[Block]:
    if not run_dirs:
        raise ReportError("compare needs at least one run folder")
    summaries = [load_summary(d) for d in run_dirs]
    labels = _unique([run_label(d, s) for d, s in zip(run_dirs, summaries, strict=True)])
    metrics = [m for m in summaries[0]["metrics"] if all(m in s["metrics"] for s in summaries)]
    overall = [m for m in metrics if class_metric(m) is None]  # each its own table; per-class ones as rows below
    primaries = {s["primary_metric"] for s in summaries}
    arms: list[str] = []
    for s in summaries:
        arms += [a for a in s["arms"] if a not in arms]
    blocks: list[Block] = [Heading("TPP comparison across runs", 1)]
    setup = []
    for label, s in zip(labels, summaries, strict=True):
        b, pre, ft = s.get("backbone", {}), s.get("pretext", {}), s.get("finetune", {})
        setup.append([label, f"{b.get('name')} from {b.get('checkpoint') or 'timm'}",
                      f"{s.get('peft', {}).get('method')} r={s.get('peft', {}).get('r')}",
                      f"{pre.get('method')} × {pre.get('epochs')} ep", str(ft.get("epochs")),
                      str(len(s.get("seeds", []))), str(s.get("device"))])
    blocks += [Table(["run", "backbone", "target parameters", "pretext", "fine-tune epochs", "seeds", "device"],
                     setup)]
    for m in sorted(overall, key=lambda m: m not in primaries):
        rows = []
        for arm in arms:
            row = [arm]
            for s in summaries:
                e = s["arms"].get(arm)
                cell = "—" if e is None else f"{fmt_num(e['mean'].get(m))} ± {fmt_num(e['std'].get(m))} (n={e['n']})"
                row.append(cell)
            rows.append(row)
        blocks += [Heading(f"Test {metric_label(m, summaries[0])} (mean ± std over seeds)"),
                   Table(["arm", *labels], rows)]
    pairs: list[str] = []
    for s in summaries:
        pairs += [p for p in s.get("paired", {}) if p not in pairs]
    if pairs:
        rows = []
        for name in pairs:
            for m in metrics:
                row = [name.replace("-", " − ", 1), metric_label(m, summaries[0])]
                for s in summaries:
                    d = s.get("paired", {}).get(name, {}).get(m)
                    row.append("—" if d is None else f"{fmt_signed(d['mean'])} {fmt_ci(d['ci95'], signed=True)} "
                                                     f"wins {d['wins']}/{d['n']}: {verdict(d)}")
                rows.append(row)
        blocks += [Heading("Paired differences within each run"), Table(["comparison", "metric", *labels], rows),
                   Para("Each cell: mean TPP − other over the run's seeds, its 95% bootstrap interval, and the seeds "
                        "TPP won. Runs differ in data and setup, so compare readings, not numbers, across columns.")]
    if pair_specs:
        blocks += across_blocks(run_dirs, summaries, labels, pair_specs, defaults, by_labels)
    return blocks


def write_compare(run_dirs: list[Path], output: Path | None, pair_specs: list[str] | None = None,
                  defaults: dict | None = None, by_labels: bool = False) -> str:
    """The merged table as Markdown; also written to ``output`` (HTML when it ends in .html). ``defaults`` (the
    config's defaults as a dump) keeps a key an older folder lacks out of what differs when the other holds its
    default; ``by_labels`` pairs folders by their labels (``--pair-by-labels``)."""
    blocks = compare_blocks([Path(d) for d in run_dirs], pair_specs, defaults, by_labels)
    text = to_markdown(blocks)
    if output is not None:
        output = Path(output)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(to_html(blocks, "TPP comparison across runs") if output.suffix == ".html" else text)
    return text
