"""CPU throughput: ``benchmarks/throughput.py`` at small scale on CPU (the b0 case by default), optionally
with the wall time of the default comparison.

    python benchmarks/cpu.py [--steps 10] [--batch 32] [--threads N] [--cases b0_64] [--default-run]

Ends with one line per case and step: ``CASE STEP tool_img_s=X plain_img_s=Y ratio=Z``; with
``--default-run`` first the line ``default_run wall_s=X threads=N`` (``tppeft run`` with the built-in
defaults: 2 arms x 3 seeds, both stages, on CPU).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def default_run(threads: int | None) -> float:
    """Wall seconds of ``tppeft run`` with the defaults on CPU, in a fresh process."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "tppeft", "run", "-o", str(Path(tmp) / "run"), "--set", "device=cpu"]
        if threads:
            cmd += ["--set", f"threads={threads}"]
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    p.add_argument("--cases", nargs="+", default=["b0_64"])
    p.add_argument("--default-run", action="store_true", help="also time the default comparison (minutes)")
    args = p.parse_args()
    if args.default_run:
        wall = default_run(args.threads)
        print(f"default_run wall_s={wall:.0f} threads={args.threads or os.cpu_count()}", flush=True)
    cmd = [sys.executable, str(HERE / "throughput.py"), "--device", "cpu", "--steps", str(args.steps),
           "--batch", str(args.batch), "--cases", *args.cases]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    sys.exit(subprocess.run(cmd).returncode)


if __name__ == "__main__":
    main()
