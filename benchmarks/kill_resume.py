"""Kill campaign: SIGKILL `tppeft run` at random moments of both stages, resume, and compare with an
uninterrupted run. Prints one line per kill and a summary table; exits 1 if any resumed result differs.

    python benchmarks/kill_resume.py --kills 30 [--seed 0] [--workdir runs/kill-campaign]

Each campaign starts a comparison, kills it after a random delay once training is under way, resumes it
(killing the resumed process again, and so on) until it completes, then checks that results.jsonl, every
metrics line and every saved weight file equal the reference run's (timings aside). Campaigns repeat
until ``--kills`` kills have landed. The run is small (2 seeds, both arms, 2 + 2 epochs of 3 steps, a checkpoint
after every step) so that a kill can land anywhere: in a step, an evaluation, a checkpoint write or between runs.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tppeft.rundir import RunFolder, comparable_outputs

SRC = Path(__file__).resolve().parents[1] / "src"
SETS = ["threads=1", "seeds=2", "data.limit=48", "pretext.epochs=2", "finetune.epochs=2", "pretext.batch_size=16",
        "finetune.batch_size=16", "checkpoint.every_steps=1"]


class Proc:
    """A tppeft process whose stderr lines are collected with their times."""

    def __init__(self, args: list[str]):
        env = {**os.environ, "PYTHONPATH": str(SRC)}
        self.start = time.monotonic()
        self.p = subprocess.Popen([sys.executable, "-m", "tppeft", *args], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True)
        self.lines: list[tuple[float, str]] = []
        self.training = threading.Event()  # set once the runs begin (or the process ended)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.p.stderr:
            self.lines.append((time.monotonic() - self.start, line.rstrip()))
            if "comparison of arms" in line:  # start-up is over
                self.training.set()
        self.training.set()

    def last_line(self) -> str:
        return self.lines[-1][1] if self.lines else ""


def stage_of(line: str) -> str:
    if "pretext" in line or "TPP stage:" in line:
        return "TPP stage"
    if "finetune" in line or "lora:" in line:
        return "fine-tuning"
    return "between runs / start-up"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=Path("runs/kill-campaign"))
    args = ap.parse_args()
    rng = random.Random(args.seed)
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    sets = [a for s in SETS for a in ("--set", s)]

    ref_dir = args.workdir / "reference"
    ref = Proc(["run", "-o", str(ref_dir), *sets])
    ref.training.wait()
    t_train = time.monotonic() - ref.start
    assert ref.p.wait() == 0, "\n".join(x for _, x in ref.lines)
    span = time.monotonic() - ref.start - t_train  # how long the runs last after start-up
    reference = comparable_outputs(ref_dir)
    print(f"reference: {time.monotonic() - ref.start:.0f}s, training for {span:.0f}s of it", flush=True)

    kills, campaigns, mismatches, stages = 0, 0, 0, {}
    while kills < args.kills:
        campaigns += 1
        out = args.workdir / f"campaign{campaigns}"
        cmd = ["run", "-o", str(out), *sets]
        while True:
            proc = Proc(cmd)
            cmd = ["run", "--resume", str(out), "--set", "threads=1"]
            proc.training.wait(timeout=600)
            delay = rng.uniform(0, span / 2)  # the resumed process has less left to do
            try:
                code = proc.p.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                code = None
            if code is not None or kills >= args.kills:
                code = proc.p.wait() if code is None else code
                if code != 0:
                    print("\n".join(x for _, x in proc.lines[-5:]))
                    return 1
                break
            where = stage_of(proc.last_line())
            proc.p.send_signal(signal.SIGKILL)
            proc.p.wait()
            kills += 1
            stages[where] = stages.get(where, 0) + 1
            ckpts = sum(len(list(run.checkpoints_root.glob("*/ckpt-*.safetensors"))) for run in RunFolder(out).runs())
            print(f"kill {kills:3d} (campaign {campaigns}) after {delay:5.1f}s in {where}: "
                  f"'{proc.last_line()[9:90]}' [{ckpts} checkpoint files]", flush=True)
        same = comparable_outputs(out) == reference
        mismatches += not same
        print(f"campaign {campaigns}: completed, {'identical to' if same else 'DIFFERENT from'} the reference",
              flush=True)

    print(f"\n| kills | campaigns | kills in TPP stage | in fine-tuning | between runs / start-up | "
          f"campaigns identical |\n|---|---|---|---|---|---|\n| {kills} | {campaigns} | {stages.get('TPP stage', 0)} "
          f"| {stages.get('fine-tuning', 0)} | {stages.get('between runs / start-up', 0)} | "
          f"{campaigns - mismatches}/{campaigns} |")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
