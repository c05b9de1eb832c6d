"""Wall time of one comparison made by one process against ``--jobs N`` worker processes on the same machine.

    python benchmarks/jobs.py [--jobs 1 2] [CONFIG] [--set KEY=VALUE ...]

Runs ``tppeft run`` once per value of ``--jobs`` (1 = one process using every core; N > 1 = N workers with
cores / N threads each) into a temporary folder and prints one table: jobs, threads per run, wall seconds,
speed-up over one process, and whether every run's test metrics equal the first row's (with other thread
counts the last digits may differ: float sums in another order; at equal threads they must be equal). The default
is a small few-label comparison of the built-in default (2 seeds, 10% of the labels, 1 TPP epoch, 3
fine-tuning epochs). Compare the rows of one invocation only: the machine's load changes between invocations.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SMALL = ["seeds=2", "data.label_fraction=0.1", "pretext.epochs=1", "finetune.epochs=3"]


def run(config: str | None, sets: list[str], jobs: int, out: Path) -> tuple[float, dict]:
    """Wall seconds of the comparison and its test metrics per (arm, seed)."""
    cmd = [sys.executable, "-m", "tppeft", "run", "-o", str(out)] + ([config] if config else [])
    cmd += [a for s in sets for a in ("--set", s)] + (["--jobs", str(jobs)] if jobs > 1 else [])
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    summary = json.loads((out / "summary.json").read_text())
    return wall, {(a, r["seed"]): r["test"] for a, e in summary["arms"].items() for r in e["runs"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config", nargs="?", default=None, help="YAML config or bundled name (default: built-in)")
    p.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    p.add_argument("--set", action="append", default=None, metavar="KEY=VALUE",
                   help=f"config overrides (default: {' '.join(SMALL)})")
    args = p.parse_args()
    sets = (args.set if args.set is not None else SMALL) + ["device=cpu"]
    cores = os.cpu_count() or 1
    rows, first = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for jobs in args.jobs:
            print(f"tppeft run --jobs {jobs} ...", file=sys.stderr, flush=True)
            wall, tests = run(args.config, sets, jobs, Path(tmp) / f"jobs{jobs}")
            first = first or (wall, tests)
            rows.append((jobs, max(1, cores // jobs), wall, first[0] / wall, tests == first[1]))
    print(f"| jobs | threads per run | wall s | speed-up | test metrics equal the first row's |  ({cores} cores)")
    print("|---|---|---|---|---|")
    for jobs, threads, wall, speedup, same in rows:
        print(f"| {jobs} | {threads} | {wall:.0f} | {speedup:.2f}x | {'yes' if same else 'NO'} |")


if __name__ == "__main__":
    main()
