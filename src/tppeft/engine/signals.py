"""Graceful stop on SIGINT/SIGTERM: the training loop finishes its step, checkpoints and stops.

The handler only sets a flag; :func:`tppeft.engine.train` reads it after every optimizer step. A second
SIGINT raises :class:`KeyboardInterrupt` at once (the checkpoints already on disk stay valid).
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

_requested: list[int] = []


class RunInterrupted(Exception):
    """A stop was requested; the stage wrote the checkpoint ``path`` (None when it keeps none)."""

    def __init__(self, path: Path | None = None):
        self.path = path
        self.signum = _requested[0] if _requested else signal.SIGINT
        super().__init__(f"stopped by {signal.Signals(self.signum).name}")


def stop_requested() -> bool:
    return bool(_requested)


def request_stop(signum: int = signal.SIGTERM) -> None:
    """What the handler does (also callable directly, e.g. from a test)."""
    if not _requested:
        _requested.append(signum)


def check_stop() -> None:
    """Raise :class:`RunInterrupted` between units of work when a stop was requested."""
    if _requested:
        raise RunInterrupted()


@contextmanager
def graceful_stop(log: Callable[[str], None]) -> Iterator[None]:
    """Within this block SIGINT/SIGTERM request a stop instead of killing the process."""

    def handler(signum: int, frame: object) -> None:
        if _requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        request_stop(signum)
        log(f"{signal.Signals(signum).name} received: finishing the current step and writing a checkpoint "
            "(press Ctrl-C again to stop at once)")

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    _requested.clear()
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        _requested.clear()
