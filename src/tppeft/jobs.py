"""A comparison's runs spread over worker processes on one machine: ``tppeft run --jobs N``.

On CPU a small run keeps few cores busy, so N runs side by side finish sooner than N one after another. Each (arm,
seed) run is a ``tppeft run --only ARM:SEED`` process of its own with a part folder under ``parts/``; N run at a
time, in the comparison's order, except that a run that would wait for the shared TPP stage (``pretext.stage_seed``)
another worker is making gives way to the first later run that would not. When a part is done, its run folder moves
to ``runs/<arm>/seed<k>``, its record is appended to ``results.jsonl`` and its log goes to ``logs/``: run by run,
the folder holds what one process would have written there, and at the end the figures, ``summary.json`` and
``report.md`` are written the same way. A run depends only on the configuration and its seed, so the numbers are
those of one process.

A stop (SIGINT, SIGTERM) is passed on to the workers, which write their checkpoints and stop; so does the death
of this process (Linux). ``tppeft run --resume DIR`` continues: finished runs are kept, a part with a checkpoint
continues from it. A worker that fails (not a non-finite loss, which is a finished, failed run) stops the others
the same way and is reported with its log. Hand-written rather than ``concurrent.futures``: every run is a whole
command with its own process, log and exit status, not a function call.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tppeft import ranks
from tppeft.arms import get_arm
from tppeft.config import Config
from tppeft.engine.signals import RunInterrupted, stop_requested
from tppeft.errors import WorkerError
from tppeft.experiment.comparison import comparison_meta, finish_comparison, run_order
from tppeft.experiment.context import Context
from tppeft.experiment.shared_stage import stage_finished
from tppeft.io import append_jsonl, read_jsonl
from tppeft.rundir import JOBS_FOLDER_ENV, RunFolder

PARTS = "parts"  # the part folders of the runs in progress, and their logs
LOGS = "logs"  # the logs of the finished runs
POLL_SECONDS = 0.5
_TAIL_LINES = 5  # lines of a failed worker's log shown in the error


def worker_threads(threads: int | None, jobs: int) -> int:
    """Threads of each worker: the configured ``threads``, or an equal share of the cores."""
    return threads or max(1, ranks.cores() // jobs)


def part_folder(folder: RunFolder, arm: str, seed: int) -> RunFolder:
    return RunFolder(folder.root / PARTS / f"{arm}-seed{seed}")


def log_path(folder: RunFolder, arm: str, seed: int, finished: bool) -> Path:
    return folder.root / (LOGS if finished else PARTS) / f"{arm}-seed{seed}.log"


# How a worker starts: it asks for SIGTERM when its parent dies (Linux's PR_SET_PDEATHSIG, kept across exec), so
# a killed parent leaves no worker writing on, then becomes ``python -m tppeft ...``. (A preexec_fn would do the
# same before exec, but is unsafe once torch has started threads in this process.)
_LAUNCH = """import ctypes, os, signal, sys
try:
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
except (OSError, AttributeError):
    pass
if os.getppid() != int(sys.argv[1]):
    sys.exit(128 + signal.SIGTERM)
os.execv(sys.executable, [sys.executable, "-m", "tppeft", *sys.argv[2:]])
"""


@dataclass
class _Worker:
    arm: str
    seed: int
    proc: subprocess.Popen
    log: Path
    out: IO[bytes]  # the log, open for the worker's stderr
    started: float = field(default_factory=time.perf_counter)
    echoed: int = 0  # bytes of the log already echoed

    def echo(self, final: bool = False) -> None:
        """Print the complete lines the worker has logged since the last call (all of it when ``final``)."""
        with open(self.log, "rb") as f:
            f.seek(self.echoed)
            new = f.read()
        end = len(new) if final else new.rfind(b"\n") + 1
        if end:
            sys.stderr.write(new[:end].decode(errors="replace"))
            sys.stderr.flush()
            self.echoed += end

    def tail(self) -> str:
        lines = [ln for ln in self.log.read_text(errors="replace").splitlines() if ln.strip()]
        return " | ".join(lines[-_TAIL_LINES:]) or "(nothing logged)"


def _start(folder: RunFolder, arm: str, seed: int, threads: int, log: Callable[[str], None]) -> _Worker:
    """A worker for one run: a new part folder, or the existing one resumed from its checkpoint."""
    part = part_folder(folder, arm, seed)
    base = [sys.executable, "-c", _LAUNCH, str(os.getpid()), "run"]
    if part.is_tppeft():
        cmd = [*base, "--resume", str(part.root)]
        log(f"[{arm} seed {seed}] resuming its part {part.root}")
    else:
        if part.root.exists():  # made, but killed before its config was written: nothing to keep
            shutil.rmtree(part.root)
        cmd = [*base, str(folder.config), "--only", f"{arm}:{seed}", "-o", str(part.root)]
    cmd += ["--set", f"threads={threads}"]
    path = log_path(folder, arm, seed, finished=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = open(path, "ab")  # noqa: SIM115 - closed by run_jobs when the worker has ended
    env = {**os.environ, JOBS_FOLDER_ENV: str(folder.root)}  # its messages name the comparison to resume
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=out, stdin=subprocess.DEVNULL, env=env)
    return _Worker(arm, seed, proc, path, out, echoed=path.stat().st_size)


def _adopt(folder: RunFolder, arm: str, seed: int) -> None:
    """A run that one process started in the comparison's own folder (resumed with ``--jobs``): its run folder
    becomes a part, as the worker's own ``run --only ARM:SEED`` would have made it, so that the worker resumes the
    run from its checkpoints. A part already there (a kill while it was being collected) is left as it is."""
    part, source = part_folder(folder, arm, seed), folder.run(arm, seed).root
    if part.is_tppeft() or not source.is_dir():
        return
    if part.root.exists():
        shutil.rmtree(part.root)
    part.create(False, folder.config.read_text(), {"command": "run", "only": [f"{arm}:{seed}"]})
    target = part.run(arm, seed).root
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(source, target)


def _collect(folder: RunFolder, arm: str, seed: int) -> dict:
    """Move a finished part into the comparison's folder; returns its run's record.

    Order matters for a kill at any moment: the run folder moves first (a later call finds it moved), then the
    results line is appended (after it, the run counts as finished), then the part goes."""
    part = part_folder(folder, arm, seed)
    record = next(r for r in read_jsonl(part.results) if (r["arm"], r["seed"]) == (arm, seed))
    source, target = part.run(arm, seed).root, folder.run(arm, seed).root
    if source.is_dir():
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)
    append_jsonl(folder.results, record)
    _drop_part(folder, arm, seed)
    return record


def _drop_part(folder: RunFolder, arm: str, seed: int) -> None:
    """A finished run's part folder goes; its log is kept under ``logs/``."""
    running = log_path(folder, arm, seed, finished=False)
    if running.is_file():
        kept = log_path(folder, arm, seed, finished=True)
        kept.parent.mkdir(parents=True, exist_ok=True)
        os.replace(running, kept)
    shutil.rmtree(part_folder(folder, arm, seed).root, ignore_errors=True)


def forget_parts(folder: RunFolder, pairs: set[tuple[str, int]]) -> None:
    """``--resume --redo``: the runs' part folders and logs go too, so that no worker continues an old run."""
    for arm, seed in pairs:
        shutil.rmtree(part_folder(folder, arm, seed).root, ignore_errors=True)
        for finished in (False, True):
            log_path(folder, arm, seed, finished).unlink(missing_ok=True)


def _next_run(cfg: Config, folder: RunFolder, todo: list[tuple[str, int]], running: list[_Worker]) -> int:
    """Where in ``todo`` the run to start is: the first, unless its arm's shared TPP stage is being made by a running
    worker (it would only wait for it) and a later run would not wait."""
    if cfg.pretext.stage_seed is None:
        return 0

    def waits(arm: str) -> bool:
        return (get_arm(arm).has_tpp_stage and any(w.arm == arm for w in running)
                and not stage_finished(folder.runs_root / arm))

    return next((i for i, (arm, _) in enumerate(todo) if not waits(arm)), 0)


def _describe(rc: int) -> str:
    if rc < 0:
        return f"was killed by {signal.Signals(-rc).name}"
    return f"ended with exit code {rc}"


def run_jobs(cfg: Config, folder: RunFolder, ctx: Context, log: Callable[[str], None], jobs: int,
             resume: bool = False, only: set[tuple[str, int]] | None = None) -> dict:
    """Make the comparison's runs (``only`` those) in ``jobs`` worker processes into ``folder`` (made by
    :meth:`tppeft.rundir.RunFolder.create`, with its config.yaml); returns the summary it writes."""
    start = time.perf_counter()
    meta, _ = comparison_meta(cfg, ctx, log)
    folder.check_images(meta["data"]["split_sha256"])
    meta["jobs"] = jobs
    records = read_jsonl(folder.results, repair=True) if resume and folder.results.is_file() else []
    finished = {(r["arm"], r["seed"]) for r in records}
    for arm, seed in finished:  # a kill after a results line, before its part was removed
        _drop_part(folder, arm, seed)
    todo = [run for run in run_order(cfg) if (not only or run in only) and run not in finished]
    for arm, seed in todo if resume else ():
        _adopt(folder, arm, seed)
    total = len(todo) + len(records)
    threads = worker_threads(cfg.threads, jobs)
    log(f"{len(todo)} run(s) in {min(jobs, len(todo)) or jobs} worker process(es) at a time, {threads} thread(s) "
        f"each; their logs: {folder.root / PARTS}" + (f"; {len(records)} finished run(s) kept" if records else ""))
    running: list[_Worker] = []
    failure: str | None = None
    stopping = False

    def stop_all() -> None:
        for w in running:
            if w.proc.poll() is None:
                w.proc.send_signal(signal.SIGTERM)

    try:
        while running or (todo and not stopping):
            if (stop_requested() or failure) and not stopping:
                stopping = True
                stop_all()
                continue
            while todo and len(running) < jobs and not stopping:
                arm, seed = todo.pop(_next_run(cfg, folder, todo, running))
                if part_folder(folder, arm, seed).is_complete():  # done before a kill, not yet collected
                    records.append(_collect(folder, arm, seed))
                    continue
                log(f"== run {len(records) + len(running) + 1}/{total}: arm {arm}, seed {seed} "
                    f"[{time.perf_counter() - start:.0f}s elapsed]")
                running.append(_start(folder, arm, seed, threads, log))
            time.sleep(POLL_SECONDS)
            for w in list(running):
                w.echo()
                rc = w.proc.poll()
                if rc is None:
                    continue
                w.echo(final=True)
                w.out.close()
                running.remove(w)
                if rc in (0, 1) and part_folder(folder, w.arm, w.seed).is_complete():  # 1: a non-finite loss
                    record = _collect(folder, w.arm, w.seed)
                    records.append(record)
                    log(f"[{w.arm} seed {w.seed}] done in {time.perf_counter() - w.started:.0f}s "
                        f"({len(records)}/{total} runs)")
                elif not stopping and failure is None:
                    failure = (f"run {w.arm} seed {w.seed} {_describe(rc)}; its log: "
                               f"{w.log}: {w.tail()}")
    finally:
        stop_all()
        for w in running:
            w.proc.wait()
            w.out.close()
    if failure:
        raise WorkerError(failure)
    if stop_requested():
        raise RunInterrupted()
    with contextlib.suppress(OSError):
        (folder.root / PARTS).rmdir()
    return finish_comparison(cfg, ctx, folder, records, meta, time.perf_counter() - start, resume)
