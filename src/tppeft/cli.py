"""Command line: parse, build the config, call the comparison or a stage. Run ``tppeft -h``.

Everything that can be checked (config, data, backbone, target-parameter files, the output folder and its
free space) is checked before the output folder is created, so a bad input leaves nothing behind.
Under ``torchrun`` every process runs the command and checks alike; the first one alone writes and prints.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import tppeft
from tppeft import ranks
from tppeft.arms import get_arm, list_arms
from tppeft.bundled import bundled_configs, config_path
from tppeft.config import (
    Config,
    ConfigError,
    docs_markdown,
    iter_fields,
    load_config,
    parse_override,
)
from tppeft.engine.config import GROWING_KEYS, RUNTIME_KEYS, is_runtime_key
from tppeft.engine.signals import RunInterrupted, check_stop, graceful_stop
from tppeft.errors import (
    BackboneChangedError,
    BackboneError,
    CheckpointError,
    DataError,
    JsonLinesError,
    NonFiniteLossError,
    ReportError,
    TargetParamError,
    WorkerError,
)
from tppeft.io import append_jsonl, config_to_yaml, read_jsonl, write_json, write_text
from tppeft.rundir import JOBS_FOLDER_ENV, OutputError, RunFolder, RunPaths, estimate_run_bytes
from tppeft.targets import list_target_methods

if TYPE_CHECKING:
    from tppeft.experiment.context import Context

USER_ERRORS = (ConfigError, DataError, BackboneError, OutputError, TargetParamError, CheckpointError, ReportError,
               JsonLinesError,
               FileNotFoundError)
# Write failures of the environment (full disk, quota, file size limit, read-only or forbidden folder).
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM}
TRAINING_COMMANDS = ("run", "pretrain", "finetune", "sweep", "backbone-pretrain")


def log(msg: str) -> None:
    if ranks.is_main():
        print(f"{time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


def say(text: str) -> None:
    """Print a result (the first process only, under torchrun)."""
    if ranks.is_main():
        print(text)


def _config(args: argparse.Namespace) -> Config:
    spec = None if args.config is None else config_path(args.config)
    cfg = load_config(spec, args.set or [])
    from tppeft.pretext import check_pretext
    from tppeft.targets import check_method

    check_method(cfg.peft.method)  # unknown names are config errors before any output is written
    check_pretext(cfg.pretext)
    for arm in cfg.arms:
        variant = get_arm(arm).pretext_config(cfg.pretext)
        if variant is not None:
            try:
                check_pretext(variant)
            except ConfigError as e:
                raise ConfigError(f"arms: '{arm}': {e}") from None
    return cfg


def _resume_config(args: argparse.Namespace) -> tuple[Config, RunFolder]:
    """The config of the run folder ``--resume DIR``; only runtime keys may be overridden."""
    folder = RunFolder(args.resume)
    if args.config is not None:
        raise ConfigError(f"--resume takes the configuration from {folder.config}; give no CONFIG argument")
    if args.output is not None or args.overwrite:
        raise ConfigError("--resume continues DIR in place; drop --output and --overwrite")
    saved = folder.reopen_for_resume(args.command)  # a tppeft run, made by this command?
    for text in args.set or []:
        keys, _ = parse_override(text)
        if keys[0] not in GROWING_KEYS and not is_runtime_key(".".join(keys)):
            raise ConfigError(f"--set {text}: '{'.'.join(keys)}' cannot change when resuming (it would change the "
                              f"results); only {', '.join(RUNTIME_KEYS)} may, and seeds may grow")
    cfg = load_config(folder.config, args.set or [])
    before = folder.saved_seeds()
    if before is not None and cfg.seeds != before:
        _check_more_seeds(args, saved, before, cfg.seeds)
    return cfg, folder


def _check_more_seeds(args: argparse.Namespace, saved: dict, before: int, after: int) -> None:
    """``--resume DIR --set seeds=N``: a comparison may gain seeds (its finished runs and a shared TPP stage are
    kept, the new seeds' runs are made); anything else is refused with the reason."""
    where = f"--set seeds={after}"
    if args.command != "run":
        raise ConfigError(f"{where}: only a comparison (tppeft run) has seeds to add; a '{args.command}' folder "
                          "holds one run")
    if after < before:
        raise ConfigError(f"{where}: {args.resume} has {before} seeds; resuming may add seeds, never drop them "
                          "(its finished runs stay in the comparison)")
    if saved.get("only"):
        raise ConfigError(f"{where}: {args.resume} holds only some runs of its comparison (--only "
                          f"{' '.join(saved['only'])}); make the new seeds' runs with --only in another folder and "
                          "join them with tppeft merge")


def _prepare(args: argparse.Namespace, plan: Callable[[Config], tuple[bool, int, list[str] | None]],
             init: Path | None = None, invocation: dict | Callable[[Config], dict] | None = None,
             ) -> tuple[Config, RunFolder, Context, bool]:
    """Validate everything, then create (or, with --resume, reopen) the output folder.

    ``plan(cfg)`` says whether a TPP stage will run, how many runs the folder will hold and which arms they are
    (None: a stage command); ``invocation`` (seed, init; or a function of the config giving them) is stored
    beside the config for a later --resume. Returns (config, folder, context, resuming).
    """
    from tppeft.experiment.context import prepare_context
    from tppeft.experiment.preflight import check_stage_from, check_stage_images_from, check_unshared_batches, preflight

    resume = args.resume is not None
    if resume:
        cfg, folder = _resume_config(args)
    else:
        cfg = _config(args)
        folder = RunFolder.at(args.output, args.command).check_new(args.overwrite)  # cheap checks first
    pretext, runs, arms = plan(cfg)
    if not resume:  # a resumed folder's stage was checked when the folder was made
        check_stage_from(cfg, pretext, arms)
    check_unshared_batches(cfg, pretext, arms)  # under torchrun, before joining the process group
    ctx = prepare_context(cfg, log)
    if not resume:
        check_stage_images_from(ctx, pretext)
    need = estimate_run_bytes(preflight(ctx, pretext, init), runs, cfg.checkpoint.keep_finished)
    if resume:
        folder.check_writable(need)
        before = folder.saved_seeds()
        if before is not None and cfg.seeds > before:
            log(f"adding seed(s) {before}..{cfg.seeds - 1} to the comparison of {before} seed(s) in {folder.root}: "
                "its finished runs are kept; summary and report are written again at the end")
            if ranks.is_main():
                folder.grow_seeds(cfg, before)
    else:
        folder.check_new(args.overwrite, need)
        check_stop()  # a signal during the checks: stop before anything is written
        from tppeft import distributed

        distributed.barrier()  # every process has checked the folder before the first one creates it
        if ranks.is_main():
            made_by = invocation(cfg) if callable(invocation) else invocation or {}
            folder.create(args.overwrite, cfg, {"command": args.command, **made_by})
        distributed.barrier()
    args.out_dir = folder.root
    return cfg, folder, ctx, resume


def _only_runs(specs: list[str], cfg: Config, flag: str = "--only") -> set[tuple[str, int]]:
    """``--only ARM:SEED`` (or ``--redo``) values as (arm, seed) pairs of this config."""
    pairs = set()
    for spec in specs:
        arm, _, seed = spec.partition(":")
        if arm not in cfg.arms or not seed.isdigit() or int(seed) >= cfg.seeds:
            raise ConfigError(f"{flag} '{spec}': expected ARM:SEED with ARM one of {cfg.arms} and SEED in "
                              f"0..{cfg.seeds - 1}")
        pairs.add((arm, int(seed)))
    return pairs


def _redo_runs(specs: list[str], saved_only: list[str], cfg: Config) -> set[tuple[str, int]]:
    """``--redo ARM:SEED`` values as (arm, seed) pairs, each a run of the folder being resumed."""
    redo = _only_runs(specs, cfg, "--redo")
    if saved_only and (outside := redo - _only_runs(saved_only, cfg)):
        raise ConfigError(f"--redo {' '.join(sorted(f'{a}:{s}' for a, s in outside))}: not a run of this folder, "
                          f"made with --only {' '.join(saved_only)}")
    return redo


def _forget(folder: RunFolder, redo: set[tuple[str, int]]) -> None:
    """``--redo``: the runs leave the folder (results line, run folder, a job's part), to be made again."""
    from tppeft import distributed
    from tppeft.jobs import forget_parts

    if ranks.is_main():
        dropped = folder.forget_runs(redo)
        forget_parts(folder, redo)
        fresh = sorted(redo - set(dropped))
        log(f"--redo: {len(dropped)} finished run(s) dropped to be made again from the start"
            + (f"; not finished, made anyway: {', '.join(f'{a}:{s}' for a, s in fresh)}" if fresh else ""))
    distributed.barrier()  # every process reads the results the first one rewrote


def cmd_run(args: argparse.Namespace) -> int:
    from tppeft.experiment.comparison import run_comparison
    from tppeft.reporting.report import comparison_text

    if args.resume is not None and args.only:
        raise ConfigError("--resume continues the runs DIR was made for; drop --only")
    if args.redo and args.resume is None:
        raise ConfigError("--redo ARM:SEED makes a run of a comparison again; give the comparison: "
                          "tppeft run --resume DIR --redo ARM:SEED")
    saved = _invocation(args)
    specs = saved.get("only") or args.only or []
    jobs = args.jobs or saved.get("jobs")
    spread = jobs is not None and jobs > 1 and args.resume is not None and "jobs" not in saved
    if jobs is not None and jobs > 1 and ranks.world_size() > 1:
        raise ConfigError("--jobs starts worker processes of its own; under torchrun leave it out")
    parallel = jobs is not None and (jobs > 1 or "jobs" in saved)

    def plan(c: Config) -> tuple[bool, int, list[str]]:
        _redo_runs(args.redo or [], specs, c)  # refused before anything in the folder changes
        only = _only_runs(specs, c)
        arms = sorted({a for a, _ in only}) if only else c.arms
        return any(get_arm(a).has_tpp_stage for a in arms), len(only) or c.seeds * len(c.arms), arms

    invocation = {**({"only": sorted(specs)} if specs else {}), **({"jobs": jobs} if parallel else {})}
    cfg, folder, ctx, resume = _prepare(args, plan, invocation=invocation or None)
    only = _only_runs(specs, cfg) or None
    if args.redo:
        _forget(folder, _redo_runs(args.redo, specs, cfg))
    if spread:  # from now on the folder is a --jobs comparison: a later resume uses its workers too
        log(f"{folder.root} was made by one process: its runs continue in {jobs} worker processes, a run it had "
            "started from its own checkpoints")
        if ranks.is_main():
            folder.write_command({**folder.saved_command("run"), "jobs": jobs})
    log(f"comparison of arms {cfg.arms} over {cfg.seeds} seed(s) -> {folder.root}" + (" (resumed)" if resume else "")
        + (f"; only {', '.join(sorted(specs))}" if only else ""))
    if parallel:
        from tppeft.jobs import run_jobs

        summary = run_jobs(cfg, folder, ctx, log, jobs, resume=resume, only=only)
    else:
        summary = run_comparison(cfg, folder.root, log, ctx=ctx, resume=resume, only=only)
    say(comparison_text(summary))
    say(f"\nwall time {summary['wall_seconds']:.0f} s; summary: {folder.summary}; report: {folder.report_md}")
    failed = sum(len(e.get("failed", [])) for e in summary["arms"].values())
    if failed and ranks.is_main():
        print(f"tppeft: {failed} run(s) failed and are left out of the statistics (see Problems above)",
              file=sys.stderr)
        return 1
    return 0


def _invocation(args: argparse.Namespace) -> dict:
    """What the folder being resumed was made by (its command, a stage command's seed and init)."""
    if args.resume is None:
        return {"command": args.command}
    return RunFolder(args.resume).saved_command(args.command)


def _finish_stage_folder(cfg: Config, folder: RunFolder) -> None:
    if ranks.is_main():
        folder.finish_stage(cfg.checkpoint.keep_finished)


def _pretrain_seed(args: argparse.Namespace, cfg: Config) -> int:
    """``--seed``, else the config's ``pretext.stage_seed`` (the stage a comparison shares), else 0."""
    if args.seed is not None:
        return args.seed
    return cfg.pretext.stage_seed if cfg.pretext.stage_seed is not None else 0


def cmd_pretrain(args: argparse.Namespace) -> int:
    from tppeft.experiment.model import build_run_model
    from tppeft.experiment.pretext_stage import pretrain_stage

    saved = _invocation(args).get("seed")
    cfg, folder, ctx, resume = _prepare(args, lambda c: (True, 1, None),
                                        invocation=lambda c: {"seed": _pretrain_seed(args, c)})
    seed = saved if saved is not None else _pretrain_seed(args, cfg)
    record = folder.own_run.pretext_record
    if resume and record.is_file():
        result = json.loads(record.read_text())
    else:
        run = build_run_model(ctx, seed)
        log(run.counts_text())
        result = pretrain_stage(ctx, run, seed, folder.root, f"[pretrain seed {seed}]")
        if ranks.is_main():
            write_json(record, {"seed": seed, **run.counts(), **result})
    _finish_stage_folder(cfg, folder)
    say(f"target parameters: {folder.own_run.target_params}\n"
        f"held-out pretext loss {result['loss_start']:.4f} -> {result['loss_end']:.4f}")
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    from tppeft.experiment.finetune_stage import finetune_stage
    from tppeft.experiment.model import backbone_unchanged, build_run_model

    saved = _invocation(args)
    seed, init_arg = saved.get("seed", args.seed), saved.get("init", args.init)
    if init_arg is None:
        raise ConfigError("finetune needs --init FOLDER (saved target parameters) or --init none")
    init = None if init_arg == "none" else Path(init_arg)
    if init is not None and RunPaths(init).target_params.is_dir():
        init = RunPaths(init).target_params  # a `tppeft pretrain` output folder
    if init is not None and not init.is_dir():
        raise TargetParamError(f"--init '{init}' is not a folder of saved target parameters")
    cfg, folder, ctx, resume = _prepare(args, lambda c: (False, 1, None), init=init,
                                        invocation={"seed": seed, "init": init_arg})
    results = folder.results
    if resume and results.is_file() and read_jsonl(results, repair=True):
        say(json.dumps({k: read_jsonl(results, repair=True)[-1][k] for k in ("test", "best_epoch")}))
        return 0
    run = build_run_model(ctx, seed, init=init)
    log(run.counts_text())
    tag = f"[finetune seed {seed}]"
    result = finetune_stage(ctx, run, seed, folder.root, tag)
    record = {"seed": seed, "init": str(init) if init else None, **run.counts(), **result,
              "backbone_unchanged": backbone_unchanged(ctx, run, tag)}
    if ranks.is_main():
        append_jsonl(results, record)
    _finish_stage_folder(cfg, folder)
    say(json.dumps({"test": result["test"], "best_epoch": result["best_epoch"]}))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from tppeft.pretext import list_pretexts
    from tppeft.tasks import TASKS

    kinds = {
        "peft methods": list_target_methods(),
        "pretext tasks": list_pretexts(),
        "arms": list_arms(),
        "tasks": TASKS,
        "configs": {k: str(v) for k, v in bundled_configs().items()},
    }
    for heading, items in kinds.items():
        print(f"{heading}:")
        for name, desc in items.items():
            print(f"  {name}" + (f"\t{desc}" if args.verbose else ""))
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    if args.docs:
        print(docs_markdown())
    else:
        print(config_to_yaml(_config(args)), end="")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from tppeft.sweep import run_sweep, table

    if ranks.world_size() > 1:
        raise ConfigError("tppeft sweep runs in one process; under torchrun use tppeft run per cell, or spread "
                          "the cells as independent jobs")
    spec = None if args.config is None else config_path(args.config)
    folder = RunFolder.at(args.output, "sweep")
    args.out_dir = folder.root
    sweep = run_sweep(spec, args.set or [], args.grid, folder.root, resume=args.resume, overwrite=args.overwrite,
                      log=log)
    print(table(sweep))
    print(f"\nwall time {sweep['wall_seconds']:.0f} s; table: {folder.sweep_md}")
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from tppeft.merge import merge_parts, parse_excludes
    from tppeft.reporting.report import comparison_text

    exclude = parse_excludes(args.exclude, len(args.parts))
    summary = merge_parts([Path(p) for p in args.parts], args.output, overwrite=args.overwrite, exclude=exclude)
    folder = RunFolder(args.output)
    print(comparison_text(summary))
    print(f"\nmerged {sum(e['n'] + len(e.get('failed', [])) for e in summary['arms'].values())} run(s) from "
          f"{len(args.parts)} folder(s); summary: {folder.summary}; report: {folder.report_md}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from tppeft.export import describe, export

    info = export(Path(args.source), args.output, merged=args.merged, arm=args.arm, seed=args.seed,
                  checkpoint=args.checkpoint, overwrite=args.overwrite)
    print(describe(info))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from tppeft.reporting.report import comparison_text, write_report

    folder = RunFolder(Path(args.run_dir))
    if folder.sweep.is_file() and not folder.is_complete():
        from tppeft.sweep import render, table

        sweep = json.loads(folder.sweep.read_text())
        write_text(folder.sweep_md, render(sweep))
        print(table(sweep))
        return 0
    if folder.is_unfinished_comparison():
        from tppeft.experiment.comparison import interim_summary

        print(comparison_text(interim_summary(folder, log=lambda _: None)))
        return 0
    folder.require_complete()
    path = write_report(folder.root)
    print(comparison_text(json.loads(folder.summary.read_text())))
    print(f"\nreport: {path} and {path.with_suffix('.html')}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from tppeft.config import Config
    from tppeft.reporting.compare import write_compare

    defaults = Config().model_dump(mode="json")
    if args.pair_by_labels and not args.pair:
        raise ReportError("--pair-by-labels changes how --pair pairs two folders; give --pair N:ARM,M:ARM too")
    print(write_compare([Path(d) for d in args.run_dirs], args.output, args.pair, defaults, args.pair_by_labels),
          end="")
    if args.output:
        print(f"\nwritten to {args.output}")
    return 0


def cmd_backbone_pretrain(args: argparse.Namespace) -> int:
    from tppeft.backbone_pretrain import pretrain_backbone

    resume = args.resume is not None
    if resume:
        cfg, folder = _resume_config(args)
    else:
        cfg = _config(args)
        folder = RunFolder.at(args.output, "backbone").check_new(args.overwrite)
        folder.create(args.overwrite, cfg, {"command": args.command})
    args.out_dir = out = folder.root
    meta = pretrain_backbone(cfg, out, log, resume=resume)
    folder.finish_stage(cfg.checkpoint.keep_finished)
    bp = cfg.backbone_pretrain
    print(f"checkpoint: {out / (bp.checkpoint_name + '_encoder.safetensors')} ({meta['images']:,} images, "
          f"{meta['steps']:,} steps, {meta['seconds']:.0f} s, final loss {meta['final_loss']:.4f})\n"
          f"use it: tppeft run --set backbone.name={bp.name} "
          f"--set backbone.checkpoint={out / (bp.checkpoint_name + '_encoder.safetensors')}")
    return 0


def cmd_backbone(args: argparse.Namespace) -> int:
    from tppeft.backbones.catalog import import_backbone, info, info_text
    from tppeft.backbones.factory import build_backbone

    cfg = load_config(None, [*(args.set or []), f"backbone.checkpoint={json.dumps(args.source)}"]).backbone
    if args.backbone_command == "info":
        print(info_text(info(build_backbone(cfg))))
        return 0
    files = import_backbone(cfg, args.output, args.stem, args.overwrite)
    print("\n".join(str(f) for f in files))
    print(f"use it: tppeft run --set backbone.checkpoint={files[0]}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tppeft", description="Target-Parameter Pre-training before PEFT.")
    p.add_argument("--version", action="version", version=f"tppeft {tppeft.__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser, output: bool = True, resume: bool = False) -> None:
        sp.add_argument("config", nargs="?", help="YAML config file or bundled config name (default: built-in)")
        sp.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="override a config key; value read as YAML (repeatable)")
        if output:
            sp.add_argument("--output", "-o", type=Path, help="output folder (default runs/<kind>-<time>)")
            sp.add_argument("--overwrite", action="store_true", help="replace an existing run in --output")
        if resume:
            sp.add_argument("--resume", metavar="DIR", help="continue the interrupted run in DIR with its own "
                            "config.yaml: finished runs are kept, an interrupted one continues from its checkpoint")

    sp = sub.add_parser("run", help="compare arms (baseline, tpp, ...) over seeds; writes summary.json and reports")
    common(sp, resume=True)
    sp.add_argument("--jobs", "-j", type=_positive, metavar="N",
                    help="make the runs in N worker processes side by side (each a tppeft run --only ARM:SEED, "
                    "threads = cores / N unless set); with --resume, N may change")
    sp.add_argument("--only", action="append", metavar="ARM:SEED",
                    help="make only this run of the comparison (repeatable): one job's part, joined to the others "
                    "by tppeft merge")
    sp.add_argument("--redo", action="append", metavar="ARM:SEED",
                    help="with --resume: make this run again from the start (repeatable); its results line and "
                    "folder go, a shared TPP stage is kept")
    sp.set_defaults(fn=cmd_run)
    sp = sub.add_parser("pretrain", help="TPP stage only: pre-train target parameters and save them")
    common(sp, resume=True)
    sp.add_argument("--seed", type=int, help="seed of the target parameters' init and the data order (default: "
                    "the config's pretext.stage_seed if set, else 0)")
    sp.set_defaults(fn=cmd_pretrain)
    sp = sub.add_parser("finetune", help="fine-tuning stage only, from saved target parameters or fresh")
    common(sp, resume=True)
    sp.add_argument("--init", help="folder with saved target parameters, or 'none' (required unless --resume)")
    sp.add_argument("--seed", type=int, default=0)
    sp.set_defaults(fn=cmd_finetune)
    sp = sub.add_parser("list", help="print what is registered, one name per line under a heading per kind")
    sp.add_argument("-v", "--verbose", action="store_true", help="add a description after each name")
    sp.set_defaults(fn=cmd_list)
    sp = sub.add_parser("config", help="print the resolved config as YAML, or --docs for the key reference")
    common(sp, output=False)
    sp.add_argument("--docs", action="store_true", help="print every key with type, default and meaning")
    sp.set_defaults(fn=cmd_config)
    sp = sub.add_parser("sweep", help="one comparison per cell of a grid of config values; one table of all cells")
    common(sp)
    sp.add_argument("--grid", action="append", required=True, metavar="KEY=[V1,V2]",
                    help="an axis of the grid: a config key and its values as a YAML list (repeatable)")
    sp.add_argument("--resume", action="store_true", help="reuse the finished cells of an existing sweep folder "
                    "and continue an interrupted one from its checkpoints")
    sp.set_defaults(fn=cmd_sweep)
    sp = sub.add_parser("merge", help="join the folders of one comparison run as separate jobs (run --only) "
                        "into one folder with one summary and report")
    sp.add_argument("parts", nargs="+", help="finished comparison folders of the same configuration (seeds may "
                    "differ: a finished comparison and its runs of more seeds; so may the arms: its runs of another "
                    "arm; so may an arm's own options, "
                    "e.g. baseline_matched.*, and the pretext section, where one setting made all the runs of "
                    "the arms that read it)")
    sp.add_argument("--output", "-o", type=Path, required=True, help="output folder")
    sp.add_argument("--overwrite", action="store_true", help="replace an existing run in --output")
    sp.add_argument("--exclude", action="append", default=[], metavar="N:ARM",
                    help="leave out the runs of arm ARM of the N-th part (e.g. an arm that another part brings "
                    "with other options of its own; an arm whose every run is left out is dropped); repeatable")
    sp.set_defaults(fn=cmd_merge)
    sp = sub.add_parser("export", help="a run's target parameters as adapter files or merged into a timm checkpoint")
    sp.add_argument("source", help="run folder, pretrain/finetune output, or a folder of saved target parameters")
    sp.add_argument("--output", "-o", type=Path, required=True, help="output folder")
    sp.add_argument("--merged", action="store_true",
                    help="fold the method into the backbone's weights: a plain timm checkpoint (where possible)")
    sp.add_argument("--arm", help="run folders: which arm's fine-tuned parameters (default tpp)")
    sp.add_argument("--seed", type=int, default=0, help="run folders: which seed (default 0)")
    sp.add_argument("--checkpoint", help="backbone checkpoint to use instead of the recorded one (moved files)")
    sp.add_argument("--overwrite", action="store_true", help="replace an existing export in --output")
    sp.set_defaults(fn=cmd_export)
    sp = sub.add_parser("report", help="rebuild report.md, report.html and figures of a run folder (or sweep.md of "
                        "a sweep) and print it; of a comparison still running or stopped, print its finished runs' "
                        "table (interim, written nowhere)")
    sp.add_argument("run_dir")
    sp.set_defaults(fn=cmd_report)
    sp = sub.add_parser("compare", help="merge several run folders into one table (arms x runs)")
    sp.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    sp.add_argument("--output", "-o", type=Path, help="also write the table here (.md, or .html for HTML)")
    sp.add_argument("--pair", action="append", default=[], metavar="N:ARM,M:ARM",
                    help="seed-paired difference of arm ARM of the N-th RUN_DIR minus arm ARM of the M-th (the "
                         "same folder or two whose seeds saw the same labelled and test images); repeatable")
    sp.add_argument("--pair-by-labels", action="store_true",
                    help="--pair two classification folders whose labels (training and scored split) and label "
                         "draws are the same though their images differ: the same images made otherwise (resized, "
                         "preprocessed), which you vouch for")
    sp.set_defaults(fn=cmd_compare)
    sp = sub.add_parser("backbone-pretrain",
                        help="train a whole ViT from random weights with MAE on chosen files/splits; "
                             "writes a checkpoint that backbone.checkpoint loads")
    common(sp, resume=True)
    sp.set_defaults(fn=cmd_backbone_pretrain)
    sp = sub.add_parser("backbone", help="what a checkpoint holds (info), or the checkpoint in the tool's own "
                        "layout (import)")
    bsub = sp.add_subparsers(dest="backbone_command", required=True)
    for verb, text in (("info", "print family, architecture, input and patch size, pretext heads, normalisation "
                                "and parameter count of a checkpoint"),
                       ("import", "write a checkpoint (with its MAE decoder and DINO head) in the tool's own "
                                  "layout, which backbone.checkpoint reads without the source's library or network")):
        bp = bsub.add_parser(verb, help=text)
        bp.add_argument("source", help="anything backbone.checkpoint accepts: a file, a folder, hf-hub:ORG/NAME, "
                        "timm:NAME, bundled:b0")
        bp.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="a backbone key the file cannot tell, e.g. backbone.decoder_heads=16 (repeatable)")
        if verb == "import":
            bp.add_argument("--output", "-o", type=Path, required=True, help="output folder")
            bp.add_argument("--stem", default="backbone", help="file stem: <stem>_encoder.safetensors, ...")
            bp.add_argument("--overwrite", action="store_true", help="replace an earlier import in --output")
        bp.set_defaults(fn=cmd_backbone)
    return p


def _positive(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got '{text}'")
    return int(text)


def _resume_hint(args: argparse.Namespace) -> str:
    out = getattr(args, "out_dir", None)
    if out is None:
        return ""
    if args.command == "sweep":
        return f"; resume with the same tppeft sweep command and --resume (folder {out})"
    if os.environ.get(JOBS_FOLDER_ENV):  # a worker of tppeft run --jobs: the comparison is what resumes
        return f"; resume the comparison with: tppeft run --resume {os.environ[JOBS_FOLDER_ENV]}"
    return f"; resume with: tppeft {args.command} --resume {out}"


def _one_line(e: BaseException) -> str:
    """An error message as one line, whatever a library put into it."""
    return " ".join(str(e).split())


def _tag() -> str:
    """How error lines start: ``tppeft:``, naming the process under torchrun when it is not the first."""
    return "tppeft:" if ranks.is_main() else f"tppeft [process {ranks.rank()}]:"


def _flag_hint(extra: list[str], argv: list[str]) -> str:
    """For ``--epochs 3``: the ``--set`` override(s) that the user probably meant."""
    flag = next((a for a in extra if a.startswith("--")), None)
    if flag is None:
        return ""
    name, _, value = flag[2:].partition("=")
    if not value:  # argparse may have taken the value as a positional argument: read it from the command line
        at = argv.index(flag) + 1 if flag in argv else len(argv)
        value = argv[at] if at < len(argv) and not argv[at].startswith("-") else "VALUE"
    name = name.replace("-", "_")
    keys = sorted((k for k, *_ in iter_fields()), key=lambda k: not k.startswith("finetune."))
    matches = [k for k in keys if name in (k, k.rsplit(".", 1)[-1], k.replace(".", "_"))]
    if not matches:
        return "; config keys are set with --set KEY=VALUE (`tppeft config --docs` lists them)"
    also = f" (or {', '.join(matches[1:])})" if matches[1:] else ""
    return f"; config keys are set with --set KEY=VALUE: --set {matches[0]}={value}{also}"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        given = sys.argv[1:] if argv is None else argv
        parser.error(f"unrecognized arguments: {' '.join(extra)}{_flag_hint(extra, given)}")
    guard = graceful_stop(log) if args.command in TRAINING_COMMANDS else contextlib.nullcontext()
    try:
        with guard:
            return args.fn(args)
    except USER_ERRORS as e:
        print(f"{_tag()} error: {_one_line(e)}", file=sys.stderr)
        return 2
    except (NonFiniteLossError, BackboneChangedError) as e:
        print(f"{_tag()} error: {_one_line(e)}", file=sys.stderr)
        return 1
    except WorkerError as e:
        print(f"{_tag()} error: {_one_line(e)}{_resume_hint(args)}", file=sys.stderr)
        return 1
    except RunInterrupted as e:
        name = signal.Signals(e.signum).name
        if not ranks.is_main():  # under torchrun the first process says where the checkpoint is
            return 128 + e.signum
        if getattr(args, "out_dir", None) is None:
            print(f"{_tag()} stopped by {name} before anything was written", file=sys.stderr)
        else:
            where = f"checkpoint {e.path} written" if e.path else "finished runs are kept"
            print(f"{_tag()} stopped by {name}; {where}{_resume_hint(args)}", file=sys.stderr)
        return 128 + e.signum
    except KeyboardInterrupt:
        print(f"{_tag()} interrupted at once; the checkpoints on disk are intact{_resume_hint(args)}",
              file=sys.stderr)
        return 130
    except BrokenPipeError:  # `tppeft config --docs | head`: the reader has gone; end quietly
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:
        if e.errno not in WRITE_ERRNOS:
            raise
        print(f"{_tag()} error: cannot write {e.filename or 'a file'}: {e.strerror}{_resume_hint(args)}",
              file=sys.stderr)
        return 2
    finally:
        if "tppeft.distributed" in sys.modules:  # only a command that trained imported torch
            sys.modules["tppeft.distributed"].shutdown()


if __name__ == "__main__":
    sys.exit(main())
