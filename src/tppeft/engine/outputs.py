"""Run folders: create them safely, write JSON and JSON lines."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

RUN_MARKER = "config.yaml"


class OutputError(RuntimeError):
    """An output folder that cannot be used as asked."""


def prepare_output(directory: str | Path, overwrite: bool) -> Path:
    """Make ``directory`` ready for a new run; an existing run is replaced only with ``overwrite``."""
    directory = Path(directory)
    if directory.exists() and any(directory.iterdir()):
        if not overwrite:
            raise OutputError(f"output folder '{directory}' is not empty; pass --overwrite to replace it "
                              "or choose another --output")
        if not (directory / RUN_MARKER).is_file():
            raise OutputError(f"output folder '{directory}' is not empty and holds no tppeft run "
                              f"({RUN_MARKER}); refusing to delete it even with --overwrite")
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if not os.access(directory, os.W_OK):
        raise OutputError(f"output folder '{directory}' is not writable")
    return directory


def _clean(value: Any) -> Any:
    """JSON has no NaN: write null, so that a missing number is never read as a valid one."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_clean(data), indent=1) + "\n")
    tmp.replace(path)


def append_jsonl(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(_clean(record)) + "\n")


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
