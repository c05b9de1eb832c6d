"""The errors a user can cause, in one torch-free module: the command line catches them (one line, exit code 2)
without importing the code that raises them. Each is re-exported where it is raised."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from tppeft.io import JsonLinesError
from tppeft.options import ConfigError


class DataError(ValueError):
    """A data file that cannot be used; the message names the file and what was expected."""


class BackboneError(ValueError):
    """A backbone that cannot be built; the message says why and what to use instead."""


class TargetParamError(ValueError):
    """Target parameters that cannot be attached, saved, loaded or merged as asked."""


class CheckpointError(RuntimeError):
    """No usable checkpoint where one is needed: every candidate is corrupt or belongs to another run."""


class NonFiniteLossError(RuntimeError):
    """The loss or the gradients became NaN or infinite; the run stops rather than writing invalid metrics."""


class BackboneChangedError(RuntimeError):
    """The frozen backbone's weights changed during a run: a bug, never a result; the run stops."""


class WorkerError(RuntimeError):
    """A worker process of ``tppeft run --jobs`` failed; the message names its run and log."""


class ReportError(ValueError):
    """A folder that holds no readable run summary."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices`` to a mistyped ``word``, else ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=2, cutoff=0.6)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


__all__ = ["BackboneChangedError", "BackboneError", "CheckpointError", "ConfigError", "DataError", "JsonLinesError",
           "NonFiniteLossError", "ReportError", "TargetParamError", "did_you_mean"]
