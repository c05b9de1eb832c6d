"""Kill points: a testing hook that SIGKILLs the process at a named moment, from outside, without patching code.

Set ``TPPEFT_KILL_AT`` in the environment of a command:

- ``POINT`` or ``POINT:N``: the first (or the N-th) time process 0 reaches ``POINT``, it prints one line
  ``tppeft: kill point POINT #N reached: WHERE`` to stderr and kills itself with SIGKILL, as a power loss
  would at that moment;
- ``list``: every point reached is printed that way and nothing is killed (to count them).

The points (:data:`POINTS`): ``checkpoint-mid-write`` (half of a checkpoint's temporary file written and
fsync'ed), ``checkpoint-before-rename`` (the temporary file complete, not yet renamed), ``tpp-stage-done``
(the TPP stage's last checkpoint written, fine-tuning not started) and ``results-line-written`` (a run's line
appended to results.jsonl, its checkpoints not yet deleted). ``benchmarks/kill_resume.py`` uses them.
Unset, a point costs one environment look-up (checkpoint writes and stage ends only).
"""

from __future__ import annotations

import os
import signal
import sys

from tppeft import ranks

ENV = "TPPEFT_KILL_AT"
POINTS = ("checkpoint-mid-write", "checkpoint-before-rename", "tpp-stage-done", "results-line-written")
_reached: dict[str, int] = {}


def armed() -> bool:
    """A kill point is set (``TPPEFT_KILL_AT``): callers may prepare what a point needs (e.g. a split write)."""
    return bool(os.environ.get(ENV))


def _target() -> tuple[str, int] | None:
    spec = os.environ.get(ENV)
    if not spec:
        return None
    name, _, count = spec.partition(":")
    if name != "list" and name not in POINTS:
        raise ValueError(f"{ENV}={spec}: unknown kill point; choose one of {', '.join(POINTS)} (or list)")
    return name, int(count) if count.isdigit() and int(count) > 0 else 1


def kill_point(name: str, where: str = "") -> None:
    """Reach point ``name`` (``where``: the stage, epoch and step, or the file); see the module's description."""
    target = _target()
    if target is None or not ranks.is_main():
        return
    _reached[name] = _reached.get(name, 0) + 1
    wanted, count = target
    if wanted not in ("list", name) or (wanted == name and _reached[name] != count):
        return
    print(f"tppeft: kill point {name} #{_reached[name]} reached: {where}", file=sys.stderr, flush=True)
    if wanted == name:
        _kill()


def _kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)
