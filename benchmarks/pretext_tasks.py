"""Measure every pretext task: its TPP stage alone (held-out loss start -> end, time) and, with --seeds, a
paired baseline-vs-tpp comparison of each. Prints Markdown tables; no assertions.

    python benchmarks/pretext_tasks.py stages --out runs/pretext-stages [--set KEY=VALUE ...]
    python benchmarks/pretext_tasks.py compare --out runs/pretext-compare --seeds 3 [--set KEY=VALUE ...]

Every run goes through the command line (``python -m tppeft``) with ``threads=1``, one at a time; a method
whose folder already holds its result is not run again (delete the folder to redo it); ``--no-run`` only
prints the table of the finished ones. CPU seconds are
those of the child process (user + system), which a busy machine inflates less than wall time.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

from tppeft.reporting.stats import mean_std, paired_difference
from tppeft.rundir import RunFolder

METHODS = ["mae", "simmim", "dino", "simclr", "featdistill"]


def _cli(args: list[str], sets: list[str], log: Path) -> float:
    """Run ``python -m tppeft ARGS`` with ``--set`` overrides; return its CPU seconds."""
    cmd = [sys.executable, "-m", "tppeft", *args, *[a for s in ["threads=1", *sets] for a in ("--set", s)]]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(log, "w") as f:
        done = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(cmd)}; see {log}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def stages(out: Path, methods: list[str], sets: list[str], seed: int, run: bool = True) -> None:
    rows = ["| pretext | set-up | held-out loss start → end | change | training loss, first → last epoch "
            "| stage wall s | CPU s |", "|---|---|---|---|---|---|---|"]
    for m in methods:
        folder = out / m
        record = RunFolder(folder).own_run.pretext_record
        if not record.is_file():
            if not run:
                continue
            folder.parent.mkdir(parents=True, exist_ok=True)
            cpu = _cli(["pretrain", "-o", str(folder), "--overwrite", "--seed", str(seed)],
                       [f"pretext.method={m}", *sets], out / f"{m}.log")
            (folder / "cpu.json").write_text(json.dumps({"cpu_seconds": cpu}))
        r = json.loads(record.read_text())
        cpu = json.loads((folder / "cpu.json").read_text())["cpu_seconds"] if (folder / "cpu.json").is_file() else None
        curve = r["train_loss_curve"]
        change = (r["loss_end"] - r["loss_start"]) / abs(r["loss_start"])
        rows.append(f"| `{m}` | {r.get('setup', m)} | {r['loss_start']:.4f} → {r['loss_end']:.4f} | {change:+.1%} "
                    f"| {curve[0]:.4f} → {curve[-1]:.4f} | {r['seconds']:.0f} | "
                    + (f"{cpu:.0f} |" if cpu is not None else "– |"))
    print("\n".join(rows))


def _runs(folder: Path) -> dict[str, dict[int, dict]]:
    summary = json.loads(RunFolder(folder).summary.read_text())
    return {arm: {r["seed"]: r for r in e["runs"]} for arm, e in summary["arms"].items()}


def compare(out: Path, methods: list[str], sets: list[str], seeds: int, run: bool = True) -> None:
    """The baseline arm does not depend on the pretext task: it runs once and pairs with every tpp arm."""
    common = [f"seeds={seeds}", *sets]
    base_dir = out / "baseline"
    if not RunFolder(base_dir).is_complete():
        if not run:
            raise SystemExit(f"{base_dir}: no finished baseline yet")
        out.mkdir(parents=True, exist_ok=True)
        _cli(["run", "-o", str(base_dir), "--overwrite"], ["arms=[baseline]", *common], out / "baseline.log")
    base = _runs(base_dir)["baseline"]
    lines = ["| arm | test AUC mean ± std | tpp − baseline AUC: mean [95% CI] | wins | test ACC mean ± std "
             "| held-out pretext loss start → end | run s (mean) |", "|---|---|---|---|---|---|---|"]
    auc, acc = mean_std([r["test"]["auc"] for r in base.values()]), mean_std([r["test"]["acc"] for r in base.values()])
    lines.append(f"| baseline | {auc[0]:.3f} ± {auc[1]:.3f} | | | {acc[0]:.3f} ± {acc[1]:.3f} | | "
                 f"{mean_std([r['seconds'] for r in base.values()])[0]:.0f} |")
    for m in methods:
        folder = out / f"tpp-{m}"
        if not RunFolder(folder).is_complete():
            if not run:
                continue
            _cli(["run", "-o", str(folder), "--overwrite"], ["arms=[tpp]", f"pretext.method={m}", *common],
                 out / f"tpp-{m}.log")
        tpp = _runs(folder)["tpp"]
        d = paired_difference({s: r["test"]["auc"] for s, r in tpp.items()},
                              {s: r["test"]["auc"] for s, r in base.items()})
        auc = mean_std([r["test"]["auc"] for r in tpp.values()])
        acc = mean_std([r["test"]["acc"] for r in tpp.values()])
        start = mean_std([r["pretext"]["loss_start"] for r in tpp.values()])[0]
        end = mean_std([r["pretext"]["loss_end"] for r in tpp.values()])[0]
        lines.append(f"| tpp `{m}` | {auc[0]:.3f} ± {auc[1]:.3f} | {d['mean']:+.3f} [{d['ci95'][0]:+.3f}, "
                     f"{d['ci95'][1]:+.3f}] | {d['wins']}/{d['n']} | {acc[0]:.3f} ± {acc[1]:.3f} | "
                     f"{start:.4f} → {end:.4f} | {mean_std([r['seconds'] for r in tpp.values()])[0]:.0f} |")
    print("\n".join(lines))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=["stages", "compare"])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--methods", nargs="+", default=METHODS)
    p.add_argument("--set", action="append", default=[], help="config override for every run")
    p.add_argument("--seed", type=int, default=0, help="seed of the stage runs")
    p.add_argument("--seeds", type=int, default=3, help="seeds of the comparison")
    p.add_argument("--no-run", action="store_true", help="only print the table of finished runs")
    a = p.parse_args()
    if a.what == "stages":
        stages(a.out, a.methods, a.set, a.seed, not a.no_run)
    else:
        compare(a.out, a.methods, a.set, a.seeds, not a.no_run)


if __name__ == "__main__":
    main()
