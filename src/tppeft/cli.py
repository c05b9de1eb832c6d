"""Command line: parse, build the config, call the protocol or a stage. Run ``tppeft -h``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from tppeft.backbones import BackboneError
from tppeft.bundled import bundled_configs
from tppeft.config import Config, ConfigError, config_to_yaml, docs_markdown, load_config
from tppeft.data.medmnist import DataError
from tppeft.engine.outputs import OutputError, append_jsonl, prepare_output, write_json
from tppeft.report import ReportError
from tppeft.targets import TargetParamError, list_target_methods

USER_ERRORS = (ConfigError, DataError, BackboneError, OutputError, TargetParamError, ReportError, FileNotFoundError)


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


def _config(args: argparse.Namespace) -> Config:
    spec = args.config
    if spec is not None and not Path(spec).exists() and spec in bundled_configs():
        spec = bundled_configs()[spec]
    return load_config(spec, args.set or [])


def _output(args: argparse.Namespace, kind: str) -> Path:
    out = args.output or Path("runs") / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}"
    return prepare_output(out, args.overwrite)


def cmd_run(args: argparse.Namespace) -> int:
    from tppeft.protocol import run_comparison
    from tppeft.report import comparison_text

    cfg = _config(args)
    out = _output(args, "run")
    log(f"comparison of arms {cfg.arms} over {cfg.seeds} seed(s) -> {out}")
    summary = run_comparison(cfg, out, log)
    print(comparison_text(summary))
    print(f"\nwall time {summary['wall_seconds']:.0f} s; summary: {out / 'summary.json'}; report: {out / 'report.md'}")
    return 0


def cmd_pretrain(args: argparse.Namespace) -> int:
    from tppeft.stages import build_run_model, prepare_context, pretrain_stage

    cfg = _config(args)
    out = _output(args, "pretrain")
    (out / "config.yaml").write_text(config_to_yaml(cfg))
    ctx = prepare_context(cfg, log)
    run = build_run_model(ctx, args.seed)
    result = pretrain_stage(ctx, run, args.seed, out, f"[pretrain seed {args.seed}]")
    write_json(out / "pretext.json", {"seed": args.seed, **run.counts(), **result})
    print(f"target parameters: {out / 'target_params'}\n"
          f"held-out pretext loss {result['loss_start']:.4f} -> {result['loss_end']:.4f}")
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    from tppeft.stages import build_run_model, finetune_stage, prepare_context

    cfg = _config(args)
    init = None if args.init == "none" else Path(args.init)
    if init is not None and (init / "target_params").is_dir():
        init = init / "target_params"  # a `tppeft pretrain` output folder
    out = _output(args, "finetune")
    (out / "config.yaml").write_text(config_to_yaml(cfg))
    ctx = prepare_context(cfg, log)
    run = build_run_model(ctx, args.seed, init=init)
    result = finetune_stage(ctx, run, args.seed, out, f"[finetune seed {args.seed}]")
    if not run.frozen_unchanged():
        raise RuntimeError("backbone weights changed during fine-tuning")
    record = {"seed": args.seed, "init": str(init) if init else None, **run.counts(), **result}
    append_jsonl(out / "results.jsonl", record)
    print(json.dumps({"test": result["test"], "best_epoch": result["best_epoch"]}))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from tppeft.arms import ARM_HELP
    from tppeft.pretext import list_pretexts
    from tppeft.tasks import TASKS

    kinds = {
        "peft methods": list_target_methods(),
        "pretext tasks": list_pretexts(),
        "arms": ARM_HELP,
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


def cmd_report(args: argparse.Namespace) -> int:
    from tppeft.report import comparison_text, write_report

    path = write_report(Path(args.run_dir))
    print(comparison_text(json.loads((Path(args.run_dir) / "summary.json").read_text())))
    print(f"\nreport: {path} and {path.with_suffix('.html')}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from tppeft.compare import write_compare

    print(write_compare([Path(d) for d in args.run_dirs], args.output), end="")
    if args.output:
        print(f"\nwritten to {args.output}")
    return 0


def cmd_backbone_pretrain(args: argparse.Namespace) -> int:
    from tppeft.backbones.pretrain import pretrain_backbone

    cfg = _config(args)
    out = _output(args, "backbone")
    (out / "config.yaml").write_text(config_to_yaml(cfg))
    meta = pretrain_backbone(cfg, out, log)
    bp = cfg.backbone_pretrain
    print(f"checkpoint: {out / (bp.checkpoint_name + '_encoder.safetensors')} ({meta['images']:,} images, "
          f"{meta['steps']:,} steps, {meta['seconds']:.0f} s, final loss {meta['final_loss']:.4f})\n"
          f"use it: tppeft run --set backbone.name={bp.name} "
          f"--set backbone.checkpoint={out / (bp.checkpoint_name + '_encoder.safetensors')}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tppeft", description="Target-Parameter Pre-training before PEFT.")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser, output: bool = True) -> None:
        sp.add_argument("config", nargs="?", help="YAML config file or bundled config name (default: built-in)")
        sp.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="override a config key; value read as YAML (repeatable)")
        if output:
            sp.add_argument("--output", "-o", type=Path, help="output folder (default runs/<kind>-<time>)")
            sp.add_argument("--overwrite", action="store_true", help="replace an existing run in --output")

    sp = sub.add_parser("run", help="compare arms (baseline, tpp, ...) over seeds; writes summary.json and reports")
    common(sp)
    sp.set_defaults(fn=cmd_run)
    sp = sub.add_parser("pretrain", help="TPP stage only: pre-train target parameters and save them")
    common(sp)
    sp.add_argument("--seed", type=int, default=0)
    sp.set_defaults(fn=cmd_pretrain)
    sp = sub.add_parser("finetune", help="fine-tuning stage only, from saved target parameters or fresh")
    common(sp)
    sp.add_argument("--init", required=True, help="folder with saved target parameters, or 'none'")
    sp.add_argument("--seed", type=int, default=0)
    sp.set_defaults(fn=cmd_finetune)
    sp = sub.add_parser("list", help="print what is registered, one name per line under a heading per kind")
    sp.add_argument("-v", "--verbose", action="store_true", help="add a description after each name")
    sp.set_defaults(fn=cmd_list)
    sp = sub.add_parser("config", help="print the resolved config as YAML, or --docs for the key reference")
    common(sp, output=False)
    sp.add_argument("--docs", action="store_true", help="print every key with type, default and meaning")
    sp.set_defaults(fn=cmd_config)
    sp = sub.add_parser("report", help="rebuild report.md, report.html and figures of a run folder from its files")
    sp.add_argument("run_dir")
    sp.set_defaults(fn=cmd_report)
    sp = sub.add_parser("compare", help="merge several run folders into one table (arms x runs)")
    sp.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    sp.add_argument("--output", "-o", type=Path, help="also write the table here (.md, or .html for HTML)")
    sp.set_defaults(fn=cmd_compare)
    sp = sub.add_parser("backbone-pretrain",
                        help="train a whole ViT from random weights with MAE on chosen files/splits; "
                             "writes a checkpoint that backbone.checkpoint loads")
    common(sp)
    sp.set_defaults(fn=cmd_backbone_pretrain)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except USER_ERRORS as e:
        print(f"tppeft: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tppeft: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
