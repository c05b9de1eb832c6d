"""Join the folders of one comparison spread over independent jobs (``tppeft run --only ARM:SEED``, e.g. one
per GPU or machine) into one comparison folder, as if one command had made every run.

Each (arm, seed) run of a comparison depends only on the config and its seed, never on the runs made before it
in the same process, so runs made apart give the numbers they would give together. The parts must hold
finished comparisons with the same configuration (runtime keys aside) and no run twice. They may differ in
``seeds``: a finished comparison extended by more seeds (``--set seeds=8 --only tpp:5 ...``) merges with the new
runs into the comparison with the larger number of seeds. They may differ in ``arms``: a finished comparison
gains an arm (``--set arms=[baseline,tpp,baseline_matched] --only baseline_matched:0 ...``), the merged one
holding every part's arms. They may differ in an arm's own options
(``baseline_matched.*``, ``eva.*``, which no other arm reads) when the parts holding that arm's runs agree in
them: a finished comparison gains a variant of one arm (``--set baseline_matched.stage_shared_by=8 --only
baseline_matched:0 ...``). So may the ``pretext`` section, which only the arms with a TPP stage or a matched
budget read: one comparison's ``baseline`` runs serve another pretext task's ``tpp`` and ``baseline_matched``
runs. A matched budget reads it only through the TPP stage's cost, so ``baseline_matched`` runs made under another
``pretext`` join ``tpp`` runs whose stage the parts' summaries record at the same cost (two stages of one length
and step cost). Within it, so may ``pretext.stage_seed``, which only the arms with a TPP stage read: TPP runs from
one shared stage join the other arms' runs of a comparison that made a stage per seed. A part may be a kept result
folder (config.yaml and summary.json, no results.jsonl or run folders): its runs are those its summary lists.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterable
from pathlib import Path

from tppeft.arms import get_arm
from tppeft.config import Config, load_config
from tppeft.engine.config import results_identity
from tppeft.experiment.comparison import failed_record, sort_records, summarize
from tppeft.io import append_jsonl, differing_digests, read_jsonl, write_json
from tppeft.reporting.report import write_report
from tppeft.rundir import CONFIG, STAGE_FOLDER, SUMMARY, OutputError, RunFolder

# Keys of a part's summary.json that describe the whole comparison (the rest is recomputed from the runs).
_RECOMPUTED = {"tppeft_version", "primary_metric", "metrics", "target_params", "arms", "paired", "figures",
               "wall_seconds", "resumed", "merge_excluded", "figure_runs", "arithmetic", "revision"}
STAGE_SEED = "pretext.stage_seed"


def _own_settings(names: Iterable[str]) -> dict[str, set[str]]:
    """Settings that only some of the arms ``names`` read, by dotted name, mapped to those arms: each arm's own
    options section; the ``pretext`` section, which only the arms with a TPP stage or a matched budget read; and,
    within it, ``pretext.stage_seed``, which only the arms with a TPP stage read (the matched budget does not). A
    section comes before its keys."""
    arms = [get_arm(a) for a in names]
    own = {arm.options: {arm.name} for arm in arms if arm.options}
    if readers := {arm.name for arm in arms if arm.has_tpp_stage or arm.uses_budget}:
        own["pretext"] = readers
    if staged := {arm.name for arm in arms if arm.has_tpp_stage}:
        own[STAGE_SEED] = staged
    return own


def _setting(cfg: Config, name: str, apart: Iterable[str] = ()):
    """The value of setting ``name`` (a section or one key of one) in ``cfg``; a section without the settings
    named in ``apart`` that are its keys (they are compared on their own)."""
    section, _, key = name.partition(".")
    value = getattr(cfg, section)
    if key:
        return getattr(value, key)
    keys = {n.removeprefix(f"{section}.") for n in apart if n.startswith(f"{section}.")}
    return value.model_dump(exclude=keys) if keys else value


def _with_settings(cfg: Config, values: dict) -> Config:
    """``cfg`` with the settings ``values`` (dotted names: a section or one key of a section)."""
    update: dict = {}
    for name, value in values.items():  # a section before its keys
        section, _, key = name.partition(".")
        update[section] = update.get(section, getattr(cfg, section)).model_copy(update={key: value}) if key else value
    return cfg.model_copy(update=update)


def _identity(cfg: Config, arms: list[str]) -> dict:
    """What parts of one comparison share: the results' identity (``seeds`` is not in it) without ``arms`` and
    the settings only some of the merged comparison's ``arms`` read (checked arm by arm, among the parts that
    hold those arms' runs)."""
    return results_identity(cfg, leave_out=["arms", *_own_settings(arms)])


def _merged_arms(configs: list[Config]) -> list[str]:
    """Every part's arms, each once: the first part's in its order, then those the others add."""
    return list(dict.fromkeys(a for c in configs for a in c.arms))


def _part_records(folder: RunFolder, summary: dict) -> list[dict]:
    """A part's runs: its results.jsonl, or for a kept result folder the runs its summary.json lists."""
    if folder.results.is_file():
        return read_jsonl(folder.results)
    return [r for entry in summary["arms"].values() for r in entry["runs"]] + [
        failed_record(arm, f["seed"], RuntimeError(f.get("error"))) for arm, entry in summary["arms"].items()
        for f in entry.get("failed", [])]


def _stage_cost(summary: dict) -> float | None:
    """The TPP stage's cost in fine-tuning epochs a part's summary records (its matched budget's), if any."""
    return (summary.get("baseline_matched") or {}).get("tpp_stage_in_finetune_epochs")


def _check_budget_runs(parts: list[Path], configs: list[Config], summaries: list[dict], holders: list[int],
                       source: int) -> None:
    """Matched-budget runs of the parts ``holders``, made under another ``pretext`` than the part ``source``'s (whose
    ``tpp`` runs the merged comparison keeps), were charged the same stage: their parts record the same stage cost,
    or their extra epochs were set by hand (then they read no ``pretext`` at all)."""
    ours = _stage_cost(summaries[source])
    for i in holders:
        if configs[i].baseline_matched.extra_epochs is not None:
            continue
        theirs = _stage_cost(summaries[i])
        if ours is None or theirs is None or not math.isclose(ours, theirs, rel_tol=1e-9):
            said = ", ".join(f"'{parts[j]}' {'records none' if c is None else f'{c:.2f} fine-tuning epochs'}"
                             for j, c in ((source, ours), (i, theirs)))
            raise OutputError(f"the baseline_matched runs of '{parts[i]}' were charged a TPP stage with other "
                              f"pretext.* settings than the tpp runs' stage, and not one of the same cost ({said}); "
                              "only baseline_matched runs charged the same stage's cost can be merged with them")


def _setting_sources(parts: list[Path], cfg: Config, configs: list[Config], records: list[list[dict]],
                     summaries: list[dict]) -> dict[str, int]:
    """For each setting only some arms read, the part whose value the merged comparison takes: one that holds
    those arms' runs (all such parts must agree), else the merged config's own. For ``pretext``: the parts holding
    runs with a TPP stage, if any (a matched budget reads it only through the stage's cost, checked apart)."""
    sources = {}
    own = _own_settings(cfg.arms)
    for name, arms in own.items():
        holders = [i for i, runs in enumerate(records) if any(r["arm"] in arms for r in runs)]
        if name == "pretext" and (staged := [i for i in holders if any(
                get_arm(r["arm"]).has_tpp_stage for r in records[i])]):
            ours = _setting(configs[staged[0]], name, own)  # pretext.stage_seed apart, as for every holder
            other = [i for i in holders if i not in staged and _setting(configs[i], name, own) != ours]
            _check_budget_runs(parts, configs, summaries, other, staged[0])
            holders = staged
        if any(_setting(configs[i], name, own) != _setting(configs[holders[0]], name, own) for i in holders):
            shown = name if "." in name else f"{name}.*"
            raise OutputError(f"the runs of {', '.join(sorted(arms))} come from parts with different {shown} "
                              f"settings; only runs made with one setting of {shown} can be merged")
        if holders:
            sources[name] = holders[0]
    return sources


def _differing_part(values: list, differ) -> int | None:
    """The first earlier part whose recorded value ``differ``s from the last part's (both recorded), else None."""
    last = values[-1]
    return next((i for i, v in enumerate(values[:-1]) if v and last and differ(v, last)), None)


def _check_same_images(parts: list[Path], summaries: list[dict]) -> None:
    """The last part read the images the earlier ones read, where their summaries record the splits' SHA-256: one
    data file replaced between two jobs leaves the config equal but not the images."""
    digests = [(s.get("data") or {}).get("split_sha256") for s in summaries]
    if (i := _differing_part(digests, differing_digests)) is not None:
        raise OutputError(f"'{parts[len(digests) - 1]}' read other images than '{parts[i]}' (the SHA-256 of "
                          f"their {', '.join(differing_digests(digests[i], digests[-1]))} split(s) differs; the data "
                          "file was changed between the jobs?); only parts of one comparison can be merged")


def _check_same_backbone(parts: list[Path], summaries: list[dict]) -> None:
    """The last part's backbone file is the earlier ones', where their summaries record its SHA-256: one
    checkpoint path can hold another file on another machine or after a retrain."""
    digests = [(s.get("backbone") or {}).get("sha256") for s in summaries]
    if (i := _differing_part(digests, str.__ne__)) is not None:
        raise OutputError(f"'{parts[len(digests) - 1]}' ran on another backbone than '{parts[i]}' (SHA-256 "
                          f"{digests[-1][:16]}... and {digests[i][:16]}... at the same backbone.checkpoint); only "
                          "parts of one comparison can be merged")


def _emptied_arms(arms: list[str], kept: list[dict], exclude: set[tuple[int, str]]) -> list[str]:
    """The arms of ``arms`` that ``exclude`` left without a run: the merged comparison drops them (an arm no part
    held a run of stays, its runs missing)."""
    held = {r["arm"] for r in kept}
    return [a for a in arms if a not in held and any(arm == a for _, arm in exclude)]


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
    leaving out the runs of arm ARM of part N for each (N, ARM) in ``exclude`` (N 0-based); an arm left with no
    run is dropped."""
    if not parts:
        raise OutputError("tppeft merge needs at least one part folder")
    folders = [RunFolder(part) for part in parts]
    for part, folder in zip(parts, folders, strict=True):
        if not folder.is_complete() or not folder.is_tppeft():
            raise OutputError(f"'{part}' holds no finished comparison ({SUMMARY} or {CONFIG} missing); "
                              f"finish it with tppeft run --resume {part}")
    configs = [load_config(folder.config) for folder in folders]
    arms = _merged_arms(configs)
    shared = _identity(configs[0], arms)
    for part, cfg in zip(parts[1:], configs[1:], strict=True):
        if (ident := _identity(cfg, arms)) != shared:
            differ = sorted(k for k, v in ident.items() if shared[k] != v)
            raise OutputError(f"'{part}' was run with another configuration than '{parts[0]}' (differs in "
                              f"{', '.join(differ)}); only parts of one comparison can be merged")
    summaries, records, part_records = [], [], []
    seen: dict[tuple[str, int], int] = {}  # each run's part, by index
    for index, (part, folder) in enumerate(zip(parts, folders, strict=True)):
        summaries.append(json.loads(folder.summary.read_text()))
        _check_same_images(parts, summaries)
        _check_same_backbone(parts, summaries)
        held = _part_records(folder, summaries[-1])
        arms_held = {r["arm"] for r in held}
        for arm in (a for i, a in exclude if i == index and a not in arms_held):
            raise OutputError(f"--exclude {index + 1}:{arm}: '{part}' holds no run of arm {arm} (it holds "
                              f"{', '.join(sorted(arms_held)) or 'none'})")
        part_records.append([r for r in held if (index, r["arm"]) not in exclude])
        for r in part_records[-1]:
            key = (r["arm"], r["seed"])
            if key in seen:
                raise OutputError(f"run {r['arm']} seed {r['seed']} is in both '{parts[seen[key]]}' and '{part}'")
            seen[key] = index
            records.append(r)
    emptied = _emptied_arms(arms, records, exclude)
    arms = [a for a in arms if a not in emptied]
    if not arms:
        raise OutputError("--exclude left no run to merge")
    widest = max(range(len(parts)), key=lambda i: configs[i].seeds)  # the first of the most seeds
    base = configs[widest].model_copy(update={"arms": arms})
    sources = _setting_sources(parts, base, configs, part_records, summaries)
    own = {s: _setting(configs[i], s) for s, i in sources.items()
           if _setting(configs[i], s) != _setting(base, s)}  # those arms' runs were made with these
    cfg = _with_settings(base, own) if own else base
    missing = [f"{arm}:{seed}" for seed in range(cfg.seeds) for arm in cfg.arms if (arm, seed) not in seen]
    added = [a for a in arms if any(a not in c.arms for c in configs)]
    grown = ([f"to {cfg.seeds} seeds"] if any(c.seeds != cfg.seeds for c in configs) else []) + (
        [f"by arm(s) {', '.join(added)}"] if added else [])
    if missing and grown:
        raise OutputError(f"the parts extend the comparison {' and '.join(grown)} but lack run(s) "
                          f"{', '.join(missing)}; make them with tppeft run --only ARM:SEED and merge again")
    merged = RunFolder(out).check_new(overwrite).create(overwrite)
    records = sort_records(records, cfg)
    with_files: dict[str, list[int]] = {}  # the runs whose folders come along: the figures are drawn from those
    for r in records:
        source = folders[seen[(r["arm"], r["seed"])]].run(r["arm"], r["seed"]).root
        if source.is_dir():
            shutil.copytree(source, merged.run(r["arm"], r["seed"]).root)
            with_files.setdefault(r["arm"], []).append(r["seed"])
        append_jsonl(merged.results, r)
    if STAGE_SEED in sources:  # a TPP stage shared by an arm's runs (pretext.stage_seed) goes with them
        for arm in cfg.arms:
            stage = folders[sources[STAGE_SEED]].runs_root / arm / STAGE_FOLDER
            if stage.is_dir():
                shutil.copytree(stage, merged.runs_root / arm / STAGE_FOLDER)
    merged.write_config(cfg if own or cfg.arms != configs[widest].arms else folders[widest].config.read_text())
    merged.write_command({"command": "merge", "parts": [str(p) for p in parts]})
    first = summaries[0]
    meta = {k: v for k, v in first.items() if k not in _RECOMPUTED}
    meta.update({s: summaries[i][s] for s, i in sources.items() if s in summaries[i]})  # e.g. baseline_matched's budget
    for name in emptied:  # an arm left out whole: nor its options or budget
        meta.pop(get_arm(name).options or name, None)
    if "baseline_matched" not in sources and "pretext" in sources:  # no matched runs kept: the budget their TPP stage
        meta.pop("baseline_matched", None)                           # would give, not another part's stage's
        if "baseline_matched" in cfg.arms and "baseline_matched" in summaries[sources["pretext"]]:
            meta["baseline_matched"] = summaries[sources["pretext"]]["baseline_matched"]
    meta["pretext"] = cfg.pretext.model_dump()  # as comparison_meta records it: the merged config's, stage seed too
    if "pretext" in sources:  # the TPP stage's images are those of the part its runs came from
        pretext_data = summaries[sources["pretext"]].get("data", {})
        meta["data"] = {**meta.get("data", {}), **{k: pretext_data[k] for k in ("pretext_train", "pretext_sources")
                                                  if k in pretext_data}}
    walls = [s.get("wall_seconds") for s in summaries]
    figures = []
    if first.get("task") == "classification":  # the ROC curves come from the runs' files; other figures do not
        from tppeft.tasks.classification import roc_figure

        figures = roc_figure(merged.root, cfg.arms, cfg.seeds, first["labels"], first["num_classes"])
    if sum(map(len, with_files.values())) < len(records):  # some runs came from a kept result folder
        meta["figure_runs"] = with_files
    if exclude:
        meta["merge_excluded"] = [f"{parts[i]}: {arm}" for i, arm in sorted(exclude)]
    meta.update({"seeds": list(range(cfg.seeds)), "figures": figures, "merged_from": [str(p) for p in parts],
                 "job_wall_seconds": walls, "wall_seconds": max((w for w in walls if w is not None), default=None)})
    summary = summarize(records, cfg, meta, first["metrics"], first["primary_metric"])
    write_json(merged.summary, summary)
    write_report(merged.root)
    return summary
