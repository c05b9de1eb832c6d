"""Join the folders of one comparison spread over independent jobs (``tppeft run --only ARM:SEED``, e.g. one
per GPU or machine) into one comparison folder, as if one command had made every run.

Each (arm, seed) run of a comparison depends only on the config and its seed, never on the runs made before it
in the same process, so runs made apart give the numbers they would give together. The parts must hold
finished comparisons with the same configuration (runtime keys aside) and no run twice. They may differ in
``seeds`` alone: a finished comparison extended by more seeds (``--set seeds=8 --only tpp:5 ...``) merges
with the new runs into the comparison with the larger number of seeds.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tppeft.config import Config, load_config
from tppeft.engine.config import results_identity
from tppeft.experiment.comparison import sort_records, summarize
from tppeft.io import append_jsonl, read_jsonl, write_json
from tppeft.reporting.report import write_report
from tppeft.rundir import CONFIG, SUMMARY, OutputError, RunFolder

# Keys of a part's summary.json that describe the whole comparison (the rest is recomputed from the runs).
_RECOMPUTED = {"tppeft_version", "primary_metric", "metrics", "target_params", "arms", "paired", "figures",
               "wall_seconds", "resumed"}


def _identity(cfg: Config) -> dict:
    """What parts of one comparison share: the results' identity without ``seeds``."""
    return {k: v for k, v in results_identity(cfg).items() if k != "seeds"}


def merge_parts(parts: list[Path], out: Path, overwrite: bool = False) -> dict:
    """Write ``out`` (config.yaml, results.jsonl, runs/, summary.json, report.md) from the finished ``parts``."""
    if not parts:
        raise OutputError("tppeft merge needs at least one part folder")
    configs, summaries, records = [], [], []
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
        for r in read_jsonl(folder.results):
            key = (r["arm"], r["seed"])
            if key in seen:
                raise OutputError(f"run {r['arm']} seed {r['seed']} is in both '{seen[key]}' and '{part}'")
            seen[key] = part
            records.append(r)
    widest = max(range(len(parts)), key=lambda i: configs[i].seeds)  # the first of the most seeds
    cfg = configs[widest]
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
    merged.write_config(RunFolder(parts[widest]).config.read_text())
    merged.write_command({"command": "merge", "parts": [str(p) for p in parts]})
    first = summaries[0]
    meta = {k: v for k, v in first.items() if k not in _RECOMPUTED}
    walls = [s.get("wall_seconds") for s in summaries]
    figures = []
    if first.get("task") == "classification":  # the ROC curves come from the runs' files; other figures do not
        from tppeft.tasks.classification import roc_figure

        figures = roc_figure(merged.root, cfg.arms, cfg.seeds, first["labels"], first["num_classes"])
    meta.update({"seeds": list(range(cfg.seeds)), "figures": figures, "merged_from": [str(p) for p in parts],
                 "job_wall_seconds": walls, "wall_seconds": max((w for w in walls if w is not None), default=None)})
    summary = summarize(records, cfg, meta, first["metrics"], first["primary_metric"])
    write_json(merged.summary, summary)
    write_report(merged.root)
    return summary
