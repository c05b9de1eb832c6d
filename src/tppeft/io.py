"""File I/O every other module uses: hashing, atomic replacement, JSON and JSON lines.

Every file a run writes is either replaced atomically (temporary file, fsync, rename) or appended line by
line with an fsync, so a kill leaves at most one incomplete last line, which :func:`read_jsonl` repairs.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from tppeft import faults

if TYPE_CHECKING:
    from pydantic import BaseModel


class JsonLinesError(ValueError):
    """A JSON-lines file with a bad line that is not an interrupted last write."""


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tensors_sha256(tensors: dict, h: Any = None) -> str:
    """SHA-256 of named tensors (name, dtype, shape and bytes, in name order), continuing ``h`` if given."""
    import torch  # only where tensors are hashed: reading JSON needs no torch

    h = h or hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"\0{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def differing_digests(a: dict[str, str], b: dict[str, str]) -> list[str]:
    """The names (sorted) whose SHA-256 differs between two name -> digest maps; a name one lacks differs."""
    return [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def files_sha256(files: list[Path], root: Path) -> str:
    """SHA-256 of a set of files: their paths relative to ``root`` and their own SHA-256, in the given order."""
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.relative_to(root).as_posix()} {file_sha256(f)}\n".encode())
    return h.hexdigest()


def fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_tensors(tensors: dict, path: Path | str, metadata: dict[str, str] | None = None,
                 checkpoint: str | None = None) -> None:
    """A safetensors file, written atomically with the permissions of any other output file (``checkpoint``: as
    for :func:`atomic_write_bytes`).

    By hand rather than ``safetensors.torch.save_file``: since safetensors 0.8 that creates every file with mode
    0600 whatever the umask (safetensors issue #782), so other users could not read a shared backbone or adapter.
    """
    from safetensors.torch import save

    atomic_write_bytes(Path(path), save(tensors, metadata=metadata), checkpoint=checkpoint)


def umask_permissions(path: Path) -> None:
    """Give a file another library wrote the mode a new file gets here (``0o666`` less the umask)."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def atomic_write_bytes(path: Path, data: bytes, checkpoint: str | None = None) -> None:
    """Write ``data`` to ``path`` through a temporary file, fsync and rename.

    ``checkpoint`` (where the checkpoint belongs, given only while a kill point is set) makes the write pass
    the checkpoint kill points of :mod:`tppeft.faults`: half-way through the temporary file, and before the
    rename.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            if checkpoint is None:
                f.write(data)
            else:
                half = len(data) // 2
                f.write(data[:half])
                f.flush()
                os.fsync(f.fileno())
                faults.kill_point("checkpoint-mid-write", checkpoint)
                f.write(data[half:])
            f.flush()
            os.fsync(f.fileno())
        if checkpoint is not None:
            faults.kill_point("checkpoint-before-rename", checkpoint)
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        _name(e, path)
        raise
    fsync_dir(path.parent)


def _name(error: BaseException, path: Path) -> None:
    """A failed write (a full disk raises from ``write`` with no file name) names the file it was writing."""
    if isinstance(error, OSError) and error.filename is None:
        error.filename = str(path)


def _clean(value: Any) -> Any:
    """JSON has no NaN: write null, so that a missing number is never read as a valid one."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def write_text(path: Path, text: str) -> None:
    """Replace ``path`` atomically with ``text``."""
    atomic_write_bytes(Path(path), text.encode())


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(_clean(data), indent=1) + "\n")


def append_jsonl(path: Path, record: dict) -> None:
    """Append one JSON line with one write, and fsync it: a finished line survives a crash."""
    try:
        with open(path, "a") as f:
            f.write(json.dumps(_clean(record)) + "\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        _name(e, Path(path))
        raise


def read_jsonl(path: Path, repair: bool = False, skip_incomplete: bool = False) -> list[dict]:
    """The records of a JSON-lines file. With ``repair`` an incomplete last line (a write cut short by a
    kill) is removed from the file; with ``skip_incomplete`` it is left out and the file left alone (another process
    may be writing it); any other bad line is an :class:`JsonLinesError`."""
    path = Path(path)
    text = path.read_text()
    lines = text.splitlines()
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            incomplete = i == len(lines) - 1 and not text.endswith("\n")
            if skip_incomplete and incomplete:
                break
            if repair and incomplete:
                from tppeft import distributed  # torch: only on this rare path

                if distributed.is_main():  # under torchrun the others read what the first one repairs
                    write_text(path, "".join(f"{x}\n" for x in lines[:-1]))
                break
            raise JsonLinesError(f"{path}: line {i + 1} is not valid JSON") from None
    return records


def config_to_yaml(cfg: BaseModel) -> str:
    """A configuration as the YAML of ``config.yaml`` (its keys in their declared order)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
