"""Run folders: check them before anything is written, create them safely, write JSON and JSON lines.

Every file a run writes is either replaced atomically (temporary file, fsync, rename) or appended line by
line with an fsync, so a kill leaves at most one incomplete last line, which :func:`read_jsonl` repairs.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from tppeft.io import file_sha256, read_jsonl

RUN_MARKER = "config.yaml"
COMPLETE_MARKER = "summary.json"


class OutputError(RuntimeError):
    """An output folder that cannot be used as asked."""


def _existing_ancestor(directory: Path) -> Path:
    p = directory.absolute()
    while not p.exists():
        p = p.parent
    return p


def check_output(directory: str | Path, overwrite: bool, need_bytes: int = 0) -> Path:
    """Everything :func:`create_output` needs, checked without writing anything that stays.

    The folder must be empty or absent (or hold a tppeft run and ``overwrite``), its nearest existing
    ancestor must be a writable folder, and its file system should have ``need_bytes`` free.
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise OutputError(f"output '{directory}' is a file, not a folder")
    if directory.is_dir() and any(directory.iterdir()):
        if not overwrite:
            hint = " or resume it with --resume" if (directory / RUN_MARKER).is_file() else ""
            raise OutputError(f"output folder '{directory}' is not empty; pass --overwrite to replace it{hint}, "
                              "or choose another --output")
        if not (directory / RUN_MARKER).is_file():
            raise OutputError(f"output folder '{directory}' is not empty and holds no tppeft run "
                              f"({RUN_MARKER}); refusing to delete it even with --overwrite")
    check_writable(directory, need_bytes)
    return directory


def check_writable(directory: str | Path, need_bytes: int = 0) -> None:
    """``directory`` (or the nearest folder above it that exists) takes files and has ``need_bytes`` free."""
    directory = Path(directory)
    base = _existing_ancestor(directory)
    if not base.is_dir():
        raise OutputError(f"output '{directory}': '{base}' is a file, so no folder can be made there")
    try:  # os.access is not enough: root passes it on read-only file systems
        fd, probe = tempfile.mkstemp(prefix=".tppeft-probe-", dir=base)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputError(f"output folder '{directory}' cannot be written ({base}: {e.strerror})") from None
    free = shutil.disk_usage(base).free
    if need_bytes and free < need_bytes:
        raise OutputError(f"output folder '{directory}': only {free / 2**20:.0f} MiB free on its file system, and "
                          f"this run needs about {need_bytes / 2**20:.0f} MiB; free space or choose another --output")


def estimate_run_bytes(trainable: int, runs: int, keep_checkpoints: bool) -> int:
    """Disk a folder of ``runs`` runs needs, ``trainable`` float32 parameters each: per run two saved copies
    (target parameters, fine-tuned weights); checkpoints (weights, two Adam moments, best copy; two per stage,
    two stages) for one run at a time, or for every run when they are kept."""
    per_copy = 4 * trainable
    checkpoints = 2 * 2 * 4 * per_copy + 2**16
    return runs * 2 * per_copy + (max(runs, 1) if keep_checkpoints else 1) * checkpoints + 2**20


def create_output(directory: str | Path, overwrite: bool) -> Path:
    """Make ``directory`` ready for a new run (call :func:`check_output` first)."""
    directory = Path(directory)
    if directory.is_dir() and any(directory.iterdir()) and overwrite:
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def prepare_output(directory: str | Path, overwrite: bool) -> Path:
    """Check and create ``directory`` for a new run; an existing run is replaced only with ``overwrite``."""
    return create_output(check_output(directory, overwrite), overwrite)


TIMING_KEYS = ("seconds", "finetune_seconds")


def comparable_outputs(run_dir: Path) -> dict:
    """What a comparison folder holds that must not depend on interruptions or the machine's speed: its
    results and metrics lines without timings, and the SHA-256 of every weight file (resume checks)."""
    def strip(rec: dict) -> dict:
        rec = {k: v for k, v in rec.items() if k not in TIMING_KEYS}
        if isinstance(rec.get("pretext"), dict):
            rec["pretext"] = strip(rec["pretext"])
        return rec

    out = Path(run_dir)
    result = {"results": [strip(r) for r in read_jsonl(out / "results.jsonl")]}
    for path in sorted(out.glob("runs/*/seed*/metrics.jsonl")):
        result[str(path.relative_to(out))] = [strip(r) for r in read_jsonl(path)]
    for path in sorted(out.glob("runs/**/*.safetensors")):
        result[str(path.relative_to(out))] = file_sha256(path)
    return result
