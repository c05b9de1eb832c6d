"""Which process this is (from the process group when one is up, else from torchrun's environment) and the
cores it may run on, torch-free.

The command line reads it before torch is imported (``tppeft --help``, ``list`` and ``config`` never import
torch); :mod:`tppeft.distributed` re-exports it.
"""

from __future__ import annotations

import os
import sys


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def _group():
    """torch.distributed when a process group is up (it cannot be without torch imported), else None."""
    dist = sys.modules.get("torch.distributed")
    return dist if dist is not None and dist.is_available() and dist.is_initialized() else None


def world_size() -> int:
    """Processes of this job (``WORLD_SIZE`` from torchrun; 1 without it)."""
    group = _group()
    return group.get_world_size() if group else _env_int("WORLD_SIZE", 1)


def rank() -> int:
    group = _group()
    return group.get_rank() if group else _env_int("RANK", 0)


def local_rank() -> int:
    return _env_int("LOCAL_RANK", 0)


def local_world_size() -> int:
    return _env_int("LOCAL_WORLD_SIZE", 1)


def is_main() -> bool:
    """Process 0 (the only one when not distributed): it writes the outputs and prints."""
    return rank() == 0


def cores() -> int:
    """The CPU cores this process may run on (its affinity on Linux, else the machine's count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
