"""MkDocs hook: the results pages, generated from the result folders under ``results/`` at build time.

Every folder under ``results/`` that holds a ``summary.json`` (as ``tppeft run`` or ``tppeft merge`` wrote it) gets
one page, ``results/<folder>/index.md``: its report rendered from ``summary.json`` by the tool's own report
renderer (``tppeft.reporting.report``: verdict, tables, setup), the folder's figures, an optional hand-written
``notes.md`` and its ``config.yaml``. ``results/index.md`` gets the list of all of them in place of its
``<!-- results:list -->`` marker, and the nav's "Results" section one entry per folder. A new result folder needs
no change here. The functions above the hooks need neither MkDocs nor torch (the tests call them).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

RESULTS = "results"  # the repository's folder of result folders, and the site's section of their pages
SUMMARY = "summary.json"
NOTES = "notes.md"  # optional, written by hand beside the tool's files
CONFIG = "config.yaml"
LIST_MARKER = "<!-- results:list -->"
PROBES = "validity/backbone_probes/probes.json"  # linear probes of the backbones, made by a benchmark script
PROBES_MARKER = "<!-- probes -->"
PROBES_PAGE = "validity.md"
NAV_SECTION = "Results"


class ResultFolder(NamedTuple):
    path: Path  # the folder
    name: str  # its path under results/, with '/' (e.g. "validity/brain_mri_few_labels")
    summary: dict

    @property
    def page(self) -> str:
        """The page's path in the site's sources."""
        return f"{RESULTS}/{self.name}/index.md"


def find_results(root: Path) -> list[ResultFolder]:
    """Every folder under ``root`` holding a summary.json, sorted by path; hidden folders are skipped."""
    found = []
    for summary in sorted(Path(root).rglob(SUMMARY)):
        rel = summary.parent.relative_to(root)
        if not rel.parts or any(part.startswith(".") for part in rel.parts):
            continue
        found.append(ResultFolder(summary.parent, rel.as_posix(), json.loads(summary.read_text())))
    return found


def figures(result: ResultFolder) -> list[Path]:
    """The PNG files of the folder, which the page shows (and the site copies beside it)."""
    return sorted(p for p in result.path.glob("*.png") if p.is_file())


def render_page(result: ResultFolder) -> str:
    """The page: the tool's report of ``summary.json`` with the figures the folder holds, notes.md and config.yaml."""
    from tppeft.reporting.document import Heading, Image, Para, to_markdown
    from tppeft.reporting.plots import CURVES_PLOT, METRIC_PLOT, PAIRED_PLOT
    from tppeft.reporting.report import build_blocks

    present = {p.name for p in figures(result)}
    plots = {key: Path(name) for key, name in
             (("metric", METRIC_PLOT), ("paired", PAIRED_PLOT), ("curves", CURVES_PLOT)) if name in present}
    blocks = build_blocks(result.summary, plots)
    shown = []
    for block in blocks:
        if isinstance(block, Image) and Path(block.path).name not in present:
            block = Para(f"(The figure `{Path(block.path).name}` is not kept in the result folder.)")
        elif isinstance(block, Heading) and block.level == 1:
            block = Heading(f"{result.name}: {block.text}", 1)
        shown.append(block)
    report = to_markdown(shown)
    head, _, rest = report.partition("\n\n")
    source = (f"Generated from `{RESULTS}/{result.name}/{SUMMARY}` when this site is built, by the renderer of "
              "the tool's own `report.md`; the numbers are the result files', not copied by hand.")
    parts = [head, source, rest.rstrip("\n")]
    notes = result.path / NOTES
    if notes.is_file():
        parts += ["## Notes", "Written by hand beside the result files.", notes.read_text().strip()]
    config = result.path / CONFIG
    if config.is_file():
        body = "\n".join("    " + line if line else "" for line in config.read_text().rstrip("\n").split("\n"))
        parts += ["## Configuration", f'??? note "`{CONFIG}`: the resolved configuration of the run"\n\n'
                  f"    ```yaml\n{body}\n    ```"]
    files = sorted(p.name for p in result.path.iterdir() if p.is_file())
    parts += ["## Files", f"`{RESULTS}/{result.name}/` holds " + ", ".join(f"`{f}`" for f in files) + "."]
    return "\n\n".join(parts) + "\n"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def results_list(results: list[ResultFolder], base: str = RESULTS) -> str:
    """The table of all result folders for ``results/index.md`` (links relative to ``base``), with the settings
    that decide whether TPP should help: did the backbone see the data, how many labels, how long a TPP stage."""
    from tppeft.reporting.budget import late_best_arms
    from tppeft.reporting.report import saw_the_data, verdict_lines

    if not results:
        return "No result folder under `results/` yet."
    rows = ["| result | data | task | backbone saw the data | labelled / training images | TPP epochs | seeds | arms "
            "| verdict on the primary metric | fine-tuning may be too short for |", "|---" * 10 + "|"]
    for r in results:
        s = r.summary
        link = Path(r.page).relative_to(base).as_posix()
        verdict = "<br>".join(_cell(line) for line in verdict_lines(s)) or "—"
        labels = f"{(s.get('data') or {}).get('train', '?')} / {(s.get('split_sizes') or {}).get('train', '?')}"
        short = ", ".join(f"`{a.arm}` ({a.late} of {a.runs})" for a in late_best_arms(s)) or "—"
        rows.append(f"| [{r.name}]({link}) | {_cell(s.get('dataset', '?'))} | {_cell(s.get('task', '?'))} | "
                    f"{_cell(saw_the_data(s))} | {labels} | {(s.get('pretext') or {}).get('epochs', '?')} | "
                    f"{len(s.get('seeds') or [])} | {', '.join(f'`{a}`' for a in s.get('arms', {}))} | {verdict} | "
                    f"{short} |")
    return "\n".join(rows)


def probes_table(probes: dict) -> str:
    """The backbones' linear probes (``benchmarks/validity/probe_backbones.py --json``): one row per data set and
    label count, one column per backbone, each cell the test AUC and whether that backbone saw the set."""
    backbones = list(dict.fromkeys(r["backbone"] for r in probes["rows"]))
    cells: dict[tuple, dict] = {}
    for r in probes["rows"]:
        cells.setdefault((r["data"], r["train_labels"]), {})[r["backbone"]] = r
    rows = ["| data | training labels | " + " | ".join(backbones) + " |", "|---|---|" + "---|" * len(backbones)]
    for (data, labels), by in cells.items():
        shown = [f"{by[b]['test_auc']:.3f}" + (" (saw it)" if by[b]["in_pool"] else "") if b in by else "—"
                 for b in backbones]
        rows.append(f"| {data} | {labels:,} | " + " | ".join(shown) + " |")
    return "\n".join(rows)


def _results_root(config) -> Path:
    return Path(config.config_file_path).resolve().parent / RESULTS


# ---- MkDocs hooks ----------------------------------------------------------------------------------------------

def on_config(config):
    """One nav entry per result folder, after the first entry of the "Results" section."""
    for item in config.nav or []:
        if isinstance(item, dict) and isinstance(item.get(NAV_SECTION), list):
            section = item[NAV_SECTION]
            listed = {page for entry in section for page in (entry.values() if isinstance(entry, dict) else [entry])}
            section[1:1] = [{r.name: r.page} for r in find_results(_results_root(config)) if r.page not in listed]
    return config


def on_files(files, config):
    from mkdocs.structure.files import File

    for result in find_results(_results_root(config)):
        if files.get_file_from_path(result.page) is not None:
            raise ValueError(f"docs/{result.page} exists: it would hide the page generated from {RESULTS}/"
                             f"{result.name}/")
        files.append(File.generated(config, result.page, content=render_page(result)))
        for fig in figures(result):
            files.append(File.generated(config, f"{RESULTS}/{result.name}/{fig.name}", abs_src_path=str(fig)))
    return files


def on_page_markdown(markdown, page, config, files):
    if page.file.src_uri == f"{RESULTS}/index.md" and LIST_MARKER in markdown:
        markdown = markdown.replace(LIST_MARKER, results_list(find_results(_results_root(config))))
    if page.file.src_uri == PROBES_PAGE and PROBES_MARKER in markdown:
        probes = json.loads((_results_root(config) / PROBES).read_text())
        markdown = markdown.replace(PROBES_MARKER, probes_table(probes))
    return markdown
