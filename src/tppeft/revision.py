"""The source revision tppeft runs from: the git commit of the checkout it is imported from, if it is one."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

# src layout: <checkout>/src/tppeft/revision.py; an installed (not editable) package has no checkout above it
CHECKOUT = Path(__file__).resolve().parents[2]
DIRTY = "+changes"


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(CHECKOUT), *args], capture_output=True, text=True, timeout=20,
                          check=True).stdout.strip()


@functools.cache
def source_revision() -> str | None:
    """The checkout's commit, with ``+changes`` appended when tracked files differ from it; None outside a git
    checkout or without git. Read once per process (a run's code does not change while it runs)."""
    if not (CHECKOUT / ".git").exists() or not (CHECKOUT / "src" / "tppeft").is_dir():
        return None
    try:
        head = _git("rev-parse", "HEAD")
        changed = _git("status", "--porcelain", "--untracked-files=no", "--", "src")
    except (OSError, subprocess.SubprocessError):
        return None
    return head + (DIRTY if changed else "")
