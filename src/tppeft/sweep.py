"""``tppeft sweep``: one full comparison (``tppeft run``) per cell of a grid of config values, then one
table of every cell's baseline vs TPP result, read from the cells' own ``summary.json``.

Layout of a sweep folder: ``config.yaml`` (the base config), ``cells/<name>/`` (a complete run folder per
cell), ``sweep.json`` (grid + one row per finished cell, rewritten after every cell) and ``sweep.md``.
``--resume`` reuses every cell whose ``summary.json`` exists and whose config is unchanged.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tppeft.config import Config, load_config, parse_override
from tppeft.experiment.comparison import run_comparison
from tppeft.io import write_json, write_text
from tppeft.options import ConfigError
from tppeft.reporting.budget import late_best_arms
from tppeft.reporting.report import fmt_num, fmt_signed, val_mean, verdict
from tppeft.rundir import RunFolder
from tppeft.targets import method_class

PRIMARY_METRIC = "auc"  # only for a summary that names none (every summary names its task's primary metric)


def parse_grid(texts: list[str]) -> list[tuple[str, list[Any]]]:
    """``KEY=[v1, v2]`` (YAML) per axis; a single value is an axis of one."""
    axes = []
    for text in texts:
        keys, value = parse_override(text)
        values = value if isinstance(value, list) else [value]
        if not values:
            raise ConfigError(f"--grid '{text}': no values")
        axes.append((".".join(keys), values))
    if len({k for k, _ in axes}) != len(axes):
        raise ConfigError("--grid: a key appears twice")
    return axes


def _slug(value: Any) -> str:
    text = str(value)
    if "/" in text or text.endswith(".npz") or text.startswith("bundled:"):
        text = Path(text.removeprefix("bundled:")).stem
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "x"


def expand(axes: list[tuple[str, list[Any]]]) -> list[dict[str, Any]]:
    """Every combination of the axes' values, first axis slowest."""
    keys = [k for k, _ in axes]
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(v for _, v in axes))]


def cell_name(assign: dict[str, Any]) -> str:
    return "_".join(_slug(v) for v in assign.values()) or "base"


def cell_configs(spec: str | Path | None, sets: list[str], axes: list[tuple[str, list[Any]]]
                 ) -> list[tuple[str, dict[str, Any], Config]]:
    """(name, assignment, config) of every cell, all validated before anything runs."""
    cells = []
    for assign in expand(axes):
        extra = [f"{k}={json.dumps(v)}" for k, v in assign.items()]
        cfg = load_config(spec, [*sets, *extra])
        method_class(cfg.peft.method)  # an unknown method fails here, before any cell runs
        cells.append((cell_name(assign), assign, cfg))
    names = [n for n, _, _ in cells]
    if len(set(names)) != len(names):
        raise ConfigError(f"--grid: cells would share a folder name ({names}); use distinct values")
    return cells


def cell_row(name: str, assign: dict[str, Any], summary: dict) -> dict:
    """One table row from a cell's summary.json."""
    m = summary["primary_metric"]  # the task's (auc for classification, dice for segmentation)
    arms = summary["arms"]
    row: dict[str, Any] = {"cell": name, "assign": assign, "dataset": summary.get("dataset"),
                           "method": summary.get("peft", {}).get("method"), "metric": m,
                           "target_params": summary.get("target_params"), "seeds": len(summary.get("seeds", [])),
                           "wall_seconds": summary.get("wall_seconds")}
    for arm, e in arms.items():
        row[arm] = {"mean": e["mean"].get(m), "std": e["std"].get(m), "n": e["n"], "val_mean": val_mean(e, m)}
        if "pretext_loss_start" in e:
            row[arm]["pretext_loss"] = [e["pretext_loss_start"], e["pretext_loss_end"]]
    paired = summary.get("paired", {}).get("tpp-baseline", {}).get(m)
    if paired:
        row["tpp_minus_baseline"] = {k: paired[k] for k in ("mean", "std", "ci95", "wins", "n")}
        row["reading"] = verdict(paired)
    row["too_short"] = [a.arm for a in late_best_arms(summary)]  # best validation epoch late in most seeds
    return row


def table(sweep: dict) -> str:
    """The sweep as one Markdown table (primary metric, mean ± std over seeds)."""
    keys = [k for k, _ in sweep["grid"]]
    show_dataset = "data.path" not in keys
    rows = sweep["cells"]
    m = (rows[0]["metric"] if rows else "primary metric").upper()
    head = [f"`{k}`" for k in keys] + (["dataset"] if show_dataset else []) + [
        "target params", f"baseline {m}", f"TPP {m}", "TPP − baseline [95% CI]", "TPP wins", "reading",
        f"val {m}: baseline / TPP", "pretext loss (TPP stage)", "fine-tuning may be too short for"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [_slug(r["assign"][k]) for k in keys] + ([str(r["dataset"])] if show_dataset else [])
        tp = r.get("target_params") or {}
        cells.append(f"{tp['count']:,} ({fmt_num(tp.get('percent'), 2)}%)" if tp.get("count") is not None else "n/a")
        for arm in ("baseline", "tpp"):
            e = r.get(arm)
            cells.append(f"{fmt_num(e['mean'])} ± {fmt_num(e['std'])}" if e else "—")
        d = r.get("tpp_minus_baseline")
        if d:
            cells += [f"{fmt_signed(d['mean'])} [{fmt_signed(d['ci95'][0])}, {fmt_signed(d['ci95'][1])}]",
                      f"{d['wins']}/{d['n']}", r["reading"]]
        else:
            cells += ["—", "—", "—"]
        cells.append(" / ".join(fmt_num((r.get(arm) or {}).get("val_mean")) for arm in ("baseline", "tpp")))
        pre = (r.get("tpp") or {}).get("pretext_loss")
        cells.append(f"{fmt_num(pre[0], 4)} → {fmt_num(pre[1], 4)}" if pre else "—")
        cells.append(", ".join(f"`{a}`" for a in r.get("too_short") or []) or "—")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_sweep(spec: str | Path | None, sets: list[str], grid: list[str], out: Path, resume: bool = False,
              overwrite: bool = False, log: Callable[[str], None] = print) -> dict:
    """Run every cell of ``grid`` (``KEY=[values]`` texts) over the base config ``spec`` + ``sets``."""
    start = time.perf_counter()
    axes = parse_grid(grid)
    cells = cell_configs(spec, sets, axes)
    base = load_config(spec, sets)
    folder = RunFolder(out).prepare_sweep(resume, overwrite)
    folder.write_config(base)
    sweep: dict[str, Any] = {"grid": [[k, v] for k, v in axes], "sets": list(sets), "cells": []}
    for i, (name, assign, cfg) in enumerate(cells, 1):
        cell = folder.cell(name)
        same = resume and cell.holds_config(cfg)
        if same and cell.is_complete():
            log(f"=== cell {i}/{len(cells)} {name}: finished before, reused")
        elif same:
            log(f"=== cell {i}/{len(cells)} {name}: interrupted before, continued from its checkpoints")
            run_comparison(cfg, cell.root, log, resume=True)
        else:
            log(f"=== cell {i}/{len(cells)} {name}: {assign} [{time.perf_counter() - start:.0f}s elapsed]")
            cell.prepare(True, cfg, {"command": "run"})  # command.json: its images, checked on resume
            run_comparison(cfg, cell.root, log)
        sweep["cells"].append(cell_row(name, assign, json.loads(cell.summary.read_text())))
        sweep["wall_seconds"] = round(time.perf_counter() - start, 1)
        write_json(folder.sweep, sweep)
    write_text(folder.sweep_md, render(sweep))
    return sweep


def render(sweep: dict) -> str:
    sets = " ".join(f"`{s}`" for s in sweep["sets"]) or "none"
    return "\n".join([
        "# TPP sweep", "",
        f"Grid: {', '.join(f'`{k}` = {v}' for k, v in sweep['grid'])}. Overrides: {sets}. "
        f"Wall time {fmt_num(sweep.get('wall_seconds'), 0)} s.", "",
        table(sweep), "",
        "Mean ± sample std over seeds of the test metric; the difference is paired by seed, its interval a "
        "bootstrap over seeds; 'reading' says TPP better or worse only when that interval excludes zero. Choose a "
        "setting on the validation column (each run at its selected epoch), never on test. The last column names "
        "arms whose best validation epoch fell in the last quarter of their fine-tuning epochs in most seeds.", ""])
