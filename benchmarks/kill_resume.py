"""Kill campaign: SIGKILL `tppeft run` at random moments and at the kill points inside checkpoint writes and at
stage boundaries, resume, and compare with an uninterrupted run. Prints one line per kill and a table of kills
per kill point and stage; exits 1 if any resumed comparison differs from the reference (or fails).

    python benchmarks/kill_resume.py --kills 50 [--seed 0] [--workdir runs/kill-campaign]

Kills take turns over the kinds: ``signal`` (SIGKILL from outside after a random delay once training is under
way: in a step, an evaluation, a write, between runs) and each kill point of :mod:`tppeft.faults`
(``TPPEFT_KILL_AT=POINT:N``: half-way through a checkpoint's temporary file, between that file and its rename,
after the TPP stage's last checkpoint before fine-tuning, after a run's results line), at its N-th pass, N drawn
among the passes the uninterrupted run makes (counted with ``TPPEFT_KILL_AT=list``). A kill point whose N-th
pass never comes lets the process finish. Each campaign starts a comparison and resumes it, killing each
process once, until one completes; then results.jsonl, every metrics line and every saved weight file must
equal the reference run's (timings aside). Campaigns repeat until ``--kills`` kills have landed. The run is
small (2 seeds, both arms, 2 + 2 epochs of 3 steps, a checkpoint after every step) so that a kill can land
anywhere.

Wall time, measured on 2 CPU cores shared with other jobs (load average about 3): 80 s for the reference, then
about 45 s per kill (a campaign of about 2.5 kills replays one comparison plus a start-up per kill);
``--kills 5``: 5 minutes; ``--kills 50``: about 40 minutes there (about 20 campaigns), less on free cores.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tppeft.faults import ENV, POINTS
from tppeft.rundir import RunFolder, comparable_outputs

SRC = Path(__file__).resolve().parents[1] / "src"
SETS = ["threads=1", "seeds=2", "data.limit=48", "pretext.epochs=2", "finetune.epochs=2", "pretext.batch_size=16",
        "finetune.batch_size=16", "checkpoint.every_steps=1"]
KINDS = ("signal", *POINTS)
STAGES = ("TPP stage", "TPP → fine-tuning", "fine-tuning", "after a results line", "start-up / between runs")
_REACHED = re.compile(r"tppeft: kill point (\S+) #(\d+) reached: (.*)$")


class Proc:
    """A tppeft process (``kill_at``: its TPPEFT_KILL_AT) whose stderr lines are collected with their times."""

    def __init__(self, args: list[str], kill_at: str | None = None):
        env = {**os.environ, "PYTHONPATH": str(SRC)}
        env.pop(ENV, None)
        if kill_at:
            env[ENV] = kill_at
        self.start = time.monotonic()
        self.p = subprocess.Popen([sys.executable, "-m", "tppeft", *args], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True)
        self.lines: list[tuple[float, str]] = []
        self.training = threading.Event()  # set once the runs begin (or the process ended)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.p.stderr:
            self.lines.append((time.monotonic() - self.start, line.rstrip()))
            if "comparison of arms" in line:  # start-up is over
                self.training.set()
        self.training.set()

    def wait(self, timeout: float | None = None) -> int:
        code = self.p.wait(timeout=timeout)
        self.reader.join()
        return code

    def last_line(self) -> str:
        """The last log line that is not a kill point's."""
        return next((x for _, x in reversed(self.lines) if not _REACHED.search(x)), "")

    def reached(self) -> list[tuple[str, int, str]]:
        """(point, pass, where) of every kill point line printed."""
        return [(m[1], int(m[2]), m[3]) for _, x in self.lines if (m := _REACHED.search(x))]


def stage_of_line(line: str) -> str:
    """The stage a log line (the last one before an outside kill) belongs to."""
    if "pretext" in line or "TPP stage:" in line:
        return "TPP stage"
    if "finetune" in line or "test " in line:
        return "fine-tuning"
    return "start-up / between runs"


def stage_of_point(point: str, where: str) -> str:
    """The stage a kill point's pass belongs to, from its point and place."""
    if point == "tpp-stage-done":
        return "TPP → fine-tuning"
    if point == "results-line-written":
        return "after a results line"
    return "fine-tuning" if " finetune checkpoint" in where else "TPP stage"


def table(counts: dict[tuple[str, str], int]) -> str:
    """Kills per kind (rows) and stage (columns), Markdown."""
    used = [s for s in STAGES if any(counts.get((k, s)) for k in KINDS)]
    lines = ["| kill | " + " | ".join(used) + " | total |", "|---" * (len(used) + 2) + "|"]
    for kind in KINDS:
        row = [counts.get((kind, s), 0) for s in used]
        lines.append(f"| {kind} | " + " | ".join(map(str, row)) + f" | {sum(row)} |")
    totals = [sum(counts.get((k, s), 0) for k in KINDS) for s in used]
    lines.append("| all | " + " | ".join(map(str, totals)) + f" | {sum(totals)} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=30, help="kills to land in all (e.g. 5 for a check, 50 in full)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=Path("runs/kill-campaign"))
    args = ap.parse_args()
    rng = random.Random(args.seed)
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    sets = [a for s in SETS for a in ("--set", s)]
    began = time.monotonic()

    ref_dir = args.workdir / "reference"
    ref = Proc(["run", "-o", str(ref_dir), *sets], kill_at="list")
    ref.training.wait()
    t_train = time.monotonic() - ref.start
    assert ref.wait() == 0, "\n".join(x for _, x in ref.lines)
    span = time.monotonic() - ref.start - t_train  # how long the runs last after start-up
    passes = {p: sum(1 for q, _, _ in ref.reached() if q == p) for p in POINTS}
    reference = comparable_outputs(ref_dir)
    print(f"reference: {time.monotonic() - ref.start:.0f}s, training for {span:.0f}s of it; kill point passes "
          + ", ".join(f"{p} {n}" for p, n in passes.items()), flush=True)

    kills, campaigns, mismatches, unreached = 0, 0, 0, 0
    counts: dict[tuple[str, str], int] = {}
    while kills < args.kills:
        campaigns += 1
        out = args.workdir / f"campaign{campaigns}"
        cmd = ["run", "-o", str(out), *sets]
        resumed = False
        while True:
            kind = KINDS[kills % len(KINDS)] if kills < args.kills else None
            kill_at = None
            if kind in POINTS:
                n = rng.randint(1, max(1, passes[kind] // (2 if resumed else 1)))  # a resumed process has less left
                kill_at = f"{kind}:{n}"
            proc = Proc(cmd, kill_at)
            cmd, resumed = ["run", "--resume", str(out), "--set", "threads=1"], True
            proc.training.wait(timeout=600)
            code, delay = None, None
            if kind == "signal":
                delay = rng.uniform(0, span / 2)
                try:
                    code = proc.wait(timeout=delay)
                except subprocess.TimeoutExpired:
                    where = proc.last_line()
                    proc.p.send_signal(signal.SIGKILL)
                    code = proc.wait()
            else:
                code = proc.wait(timeout=1800)
            if code == 0:
                if kind in POINTS:
                    unreached += 1
                    print(f"  {kill_at}: never reached, the process finished", flush=True)
                break
            if code != -signal.SIGKILL:
                print("\n".join(x for _, x in proc.lines[-8:]))
                print(f"campaign {campaigns}: a process ended with code {code}")
                return 1
            kills += 1
            if kind == "signal":
                stage, text = stage_of_line(where), f"after {delay:.1f}s, last line '{where[9:90]}'"
            else:
                point, n, place = proc.reached()[-1]
                stage, text = stage_of_point(point, place), f"pass #{n}: {place}"
            counts[(kind, stage)] = counts.get((kind, stage), 0) + 1
            ckpts = sum(len(list(run.checkpoints_root.glob("*/ckpt-*.safetensors"))) for run in RunFolder(out).runs())
            print(f"kill {kills:3d} (campaign {campaigns}) {kind} in {stage}: {text} [{ckpts} checkpoint files]",
                  flush=True)
        same = comparable_outputs(out) == reference
        mismatches += not same
        print(f"campaign {campaigns}: completed, {'identical to' if same else 'DIFFERENT from'} the reference",
              flush=True)

    print(f"\n{kills} kills in {campaigns} campaigns ({unreached} kill point(s) never reached: those processes "
          f"finished); {campaigns - mismatches}/{campaigns} resumed comparisons identical to the reference; "
          f"{time.monotonic() - began:.0f}s\n")
    print(table(counts))
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
