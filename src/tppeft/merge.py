"""Join the folders of one comparison spread over independent jobs (``tppeft run --only ARM:SEED``, e.g. one
per GPU or machine) into one comparison folder, as if one command had made every run.

Each (arm, seed) run of a comparison depends only on the config and its seed, never on the runs made before it
in the same process, so runs made apart give the numbers they would give together. The parts must hold
finished comparisons with the same configuration (runtime keys aside) and no run twice. They may differ in
``seeds``: a finished comparison extended by more seeds (``--set seeds=8 --only tpp:5 ...``) merges with the new
runs into the comparison with the larger number of seeds. They may differ in an arm's own options
(``baseline_matched.*``, ``eva.*``, which no other arm reads) when the parts holding that arm's runs agree in
them: a finished comparison gains a variant of one arm (``--set baseline_matched.stage_shared_by=8 --only
baseline_matched:0 ...``). A part may be a kept result folder (config.yaml and summary.json, no results.jsonl
or run folders): its runs are those its summary lists.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tppeft.arms import get_arm
from tppeft.config import Config, load_config
from tppeft.engine.config import results_identity
from tppeft.experiment.comparison import failed_record, sort_records, summarize
from tppeft.io import append_jsonl, read_jsonl, write_json
from tppeft.reporting.report import write_report
from tppeft.rundir import CONFIG, SUMMARY, OutputError, RunFolder

# Keys of a part's summary.json that describe the whole comparison (the rest is recomputed from the runs).
_RECOMPUTED = {"tppeft_version", "primary_metric", "metrics", "target_params", "arms", "paired", "figures",
               "wall_seconds", "resumed", "merge_excluded"}


def _arm_sections(cfg: Config) -> dict[str, str]:
    """The configuration sections that one arm alone reads (its options), mapped to that arm."""
    return {arm.options: arm.name for arm in map(get_arm, cfg.arms) if arm.options}


def _identity(cfg: Config) -> dict:
    """What parts of one comparison share: the results' identity without ``seeds`` and the arms' own options
    (checked arm by arm, among the parts that hold the arm's runs)."""
    own = _arm_sections(cfg)
    return {k: v for k, v in results_identity(cfg).items() if k != "seeds" and k not in own}


def _part_records(folder: RunFolder, summary: dict) -> list[dict]:
    """A part's runs: its results.jsonl, or for a kept result folder the runs its summary.json lists."""
    if folder.results.is_file():
        return read_jsonl(folder.results)
    return [r for entry in summary["arms"].values() for r in entry["runs"]] + [
        failed_record(arm, f["seed"], RuntimeError(f.get("error"))) for arm, entry in summary["arms"].items()
        for f in entry.get("failed", [])]


def _section_sources(cfg: Config, configs: list[Config], records: list[list[dict]]) -> dict[str, int]:
    """For each arm's own section, the part whose setting the merged comparison takes: one that holds the arm's
    runs (all such parts must agree), else the merged config's own."""
    sources = {}
    for section, arm in _arm_sections(cfg).items():
        holders = [i for i, runs in enumerate(records) if any(r["arm"] == arm for r in runs)]
        if any(getattr(configs[i], section) != getattr(configs[holders[0]], section) for i in holders):
            raise OutputError(f"the runs of {arm} come from parts with different {section}.* settings; only runs "
                              f"made with one setting of {section}.* can be merged")
        if holders:
            sources[section] = holders[0]
    return sources


def parse_excludes(specs: list[str], n_parts: int) -> set[tuple[int, str]]:
    """``--exclude N:ARM`` values (N: 1-based position of the part on the command line) as (index, arm) pairs."""
    out = set()
    for spec in specs:
        pos, sep, arm = spec.partition(":")
        if not (sep and arm and pos.isdigit() and 1 <= int(pos) <= n_parts):
            raise OutputError(f"--exclude '{spec}': expected N:ARM with N the position (1..{n_parts}) of a part")
        out.add((int(pos) - 1, arm))
    return out


def merge_parts(parts: list[Path], out: Path, overwrite: bool = False,
                exclude: set[tuple[int, str]] = frozenset()) -> dict:
    """Write ``out`` (config.yaml, results.jsonl, runs/, summary.json, report.md) from the finished ``parts``,
    leaving out the runs of arm ARM of part N for each (N, ARM) in ``exclude`` (N 0-based)."""
    if not parts:
        raise OutputError("tppeft merge needs at least one part folder")
    configs, summaries, records, part_records = [], [], [], []
    seen: dict[tuple[str, int], Path] = {}
    for part in parts:
        folder = RunFolder(part)
        if not folder.is_complete() or not folder.is_tppeft():
            raise OutputError(f"'{part}' holds no finished comparison ({SUMMARY} or {CONFIG} missing); "
                              f"finish it with tppeft run --resume {part}")
        cfg = load_config(folder.config)
        ident, shared = _identity(cfg), _identity(configs[0] if configs else cfg)
        if ident != shared:
            differ = sorted(k for k, v in ident.items() if shared[k] != v)
            raise OutputError(f"'{part}' was run with another configuration than '{parts[0]}' (differs in "
                              f"{', '.join(differ)}); only parts of one comparison can be merged")
        configs.append(cfg)
        summaries.append(json.loads(folder.summary.read_text()))
        held, index = _part_records(folder, summaries[-1]), len(configs) - 1
        arms_held = {r["arm"] for r in held}
        for arm in (a for i, a in exclude if i == index and a not in arms_held):
            raise OutputError(f"--exclude {index + 1}:{arm}: '{part}' holds no run of arm {arm} (it holds "
                              f"{', '.join(sorted(arms_held)) or 'none'})")
        part_records.append([r for r in held if (index, r["arm"]) not in exclude])
        for r in part_records[-1]:
            key = (r["arm"], r["seed"])
            if key in seen:
                raise OutputError(f"run {r['arm']} seed {r['seed']} is in both '{seen[key]}' and '{part}'")
            seen[key] = part
            records.append(r)
    widest = max(range(len(parts)), key=lambda i: configs[i].seeds)  # the first of the most seeds
    sources = _section_sources(configs[widest], configs, part_records)
    own = {s: getattr(configs[i], s) for s, i in sources.items()
           if getattr(configs[i], s) != getattr(configs[widest], s)}  # the arm's runs were made with these
    cfg = configs[widest].model_copy(update=own) if own else configs[widest]
    missing = [f"{arm}:{seed}" for seed in range(cfg.seeds) for arm in cfg.arms if (arm, seed) not in seen]
    if missing and any(c.seeds != cfg.seeds for c in configs):
        raise OutputError(f"the parts extend the comparison to {cfg.seeds} seeds but lack run(s) {', '.join(missing)}; "
                          "make them with tppeft run --only ARM:SEED and merge again")
    merged = RunFolder(out).check_new(overwrite).create(overwrite)
    records = sort_records(records, cfg)
    for r in records:
        source = RunFolder(seen[(r["arm"], r["seed"])]).run(r["arm"], r["seed"]).root
        if source.is_dir():
            shutil.copytree(source, merged.run(r["arm"], r["seed"]).root)
        append_jsonl(merged.results, r)
    merged.write_config(cfg if own else RunFolder(parts[widest]).config.read_text())
    merged.write_command({"command": "merge", "parts": [str(p) for p in parts]})
    first = summaries[0]
    meta = {k: v for k, v in first.items() if k not in _RECOMPUTED}
    meta.update({s: summaries[i][s] for s, i in sources.items() if s in summaries[i]})  # e.g. baseline_matched's budget
    walls = [s.get("wall_seconds") for s in summaries]
    figures = []
    if first.get("task") == "classification":  # the ROC curves come from the runs' files; other figures do not
        from tppeft.tasks.classification import roc_figure

        figures = roc_figure(merged.root, cfg.arms, cfg.seeds, first["labels"], first["num_classes"])
    if exclude:
        meta["merge_excluded"] = [f"{parts[i]}: {arm}" for i, arm in sorted(exclude)]
    meta.update({"seeds": list(range(cfg.seeds)), "figures": figures, "merged_from": [str(p) for p in parts],
                 "job_wall_seconds": walls, "wall_seconds": max((w for w in walls if w is not None), default=None)})
    summary = summarize(records, cfg, meta, first["metrics"], first["primary_metric"])
    write_json(merged.summary, summary)
    write_report(merged.root)
    return summary
