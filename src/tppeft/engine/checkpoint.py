"""Checkpoints of a training stage: atomic, checksummed, the last two kept.

One checkpoint is one ``.safetensors`` file: every tensor (parameters, optimizer moments, RNG states,
best-so-far weights) is a named tensor, and everything else (step counters, scheduler and optimizer
hyper-parameters, metrics so far) is JSON in the file's metadata. The optimizer state is flattened into
it rather than written with ``torch.save``, so that a checkpoint is one pickle-free file with one checksum.

The checksum (SHA-256 over the JSON and every tensor's name, dtype, shape and bytes) is stored in the
metadata and verified on load; a file that fails to parse or to match is reported and the previous
checkpoint is used. Files are written to a temporary name, fsync'ed and renamed, so a kill at any
moment leaves either the old set of checkpoints or the new one.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel
from safetensors import safe_open

from tppeft import faults
from tppeft.engine.config import ListItems, identity_defaults, results_identity
from tppeft.errors import CheckpointError
from tppeft.io import save_tensors, tensors_sha256

FORMAT = "tppeft-checkpoint-1"
_NAME = re.compile(r"^ckpt-(\d{6})\.safetensors$")


def _digest(meta_json: str, tensors: dict[str, torch.Tensor]) -> str:
    return tensors_sha256(tensors, hashlib.sha256(meta_json.encode()))


@dataclass
class Checkpoint:
    """A verified checkpoint: its tensors and its JSON metadata."""

    path: Path
    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any]

    @property
    def done(self) -> bool:
        return bool(self.meta.get("done"))


def write_checkpoint(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any],
                     where: str | None = None) -> None:
    """Write one checkpoint atomically; ``where`` (stage, epoch, step) passes the kill points on the way."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    meta_json = json.dumps({"format": FORMAT, **meta}, sort_keys=True)
    header = {"tppeft": meta_json, "sha256": _digest(meta_json, tensors)}
    save_tensors(tensors, path, metadata=header, checkpoint=where)


def read_checkpoint(path: Path) -> Checkpoint:
    """Load and verify one checkpoint; a :class:`CheckpointError` names the file and what is wrong."""
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    except Exception as e:  # safetensors raises several types for truncated or garbled files
        raise CheckpointError(f"checkpoint {path} is unreadable (truncated or corrupt: {e})") from None
    meta_json, stored = header.get("tppeft"), header.get("sha256")
    if meta_json is None or stored is None:
        raise CheckpointError(f"checkpoint {path} has no tppeft metadata or checksum")
    if _digest(meta_json, tensors) != stored:
        raise CheckpointError(f"checkpoint {path}: checksum mismatch (the file is corrupt)")
    meta = json.loads(meta_json)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path}: format {meta.get('format')!r}, expected {FORMAT!r}")
    return Checkpoint(path, tensors, meta)


def checkpoint_files(directory: Path) -> list[Path]:
    """The checkpoint files in ``directory``, oldest first (none where it does not exist)."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if _NAME.match(p.name))


def newest_done(directory: Path) -> bool:
    """Whether the newest checkpoint in ``directory`` ends its stage, from its header alone (no tensors read, no
    checksum): a cheap look for a process that only schedules, not one that resumes."""
    files = checkpoint_files(directory)
    if not files:
        return False
    try:
        with safe_open(str(files[-1]), framework="pt") as f:
            return bool(json.loads((f.metadata() or {}).get("tppeft", "{}")).get("done"))
    except Exception:  # a file being written or a broken one: not known to be done
        return False


@dataclass
class Checkpointer:
    """The checkpoints of one stage of one run, in ``directory``.

    ``fingerprint`` identifies the configuration and stage; a checkpoint with another fingerprint is never
    resumed from, unless it is one of ``earlier`` (what older versions wrote for the same configuration) or the
    checkpoint's stored ``identity`` is this one's but for keys added since, at their ``defaults``.
    ``logs`` are append-only files (metrics lines) whose sizes every checkpoint records, so that a resume cuts
    off what was appended after the checkpoint it continues from. With ``writes`` false (every
    process but the first under torchrun) nothing is written or cut: the first process's files are read.
    """

    directory: Path
    fingerprint: str
    earlier: tuple[str, ...] = ()
    identity: dict[str, Any] | None = None
    defaults: dict[str, Any] | None = None
    every_epochs: int = 1
    every_steps: int = 0
    keep: int = 2
    logs: list[Path] = field(default_factory=list)
    log: Callable[[str], None] = print
    meta: dict[str, Any] = field(default_factory=dict)  # stage values saved with every checkpoint
    last_saved: Path | None = None
    writes: bool = True

    def _files(self) -> list[Path]:
        return checkpoint_files(self.directory)

    def due(self, step: int, epoch: int | None = None) -> bool:
        """Is a checkpoint due after optimizer step ``step`` (and, at an epoch's end, after ``epoch``)?"""
        by_epoch = epoch is not None and self.every_epochs > 0 and epoch % self.every_epochs == 0
        return by_epoch or (self.every_steps > 0 and step % self.every_steps == 0)

    def resume(self) -> Checkpoint | None:
        """The newest good checkpoint (corrupt ones are reported and skipped), or None when there is none.

        Restores the stage values (``meta``) saved with it and, unless the stage was done, cuts the logs back
        to their sizes at that checkpoint. Raises :class:`CheckpointError` when checkpoints exist but none is
        usable.
        """
        problems = []
        for path in reversed(self._files()):
            try:
                ckpt = read_checkpoint(path)
            except CheckpointError as e:
                self.log(f"WARNING: {e}; trying the previous checkpoint")
                problems.append(str(e))
                continue
            if not self._matches(ckpt.meta):
                raise CheckpointError(f"checkpoint {path} was written by another configuration or stage "
                                      f"({ckpt.meta.get('fingerprint')} != {self.fingerprint}); resume it with the "
                                      "config.yaml it was made with")
            if problems:
                self.log(f"resuming from the previous good checkpoint {path}")
            self.meta = dict(ckpt.meta.get("stage", {}))
            self.last_saved = path
            if not ckpt.done and self.writes:  # a finished stage's logs are followed by those of later stages
                self._truncate_logs(ckpt.meta.get("log_sizes", {}))
            return ckpt
        if problems:
            raise CheckpointError(f"{problems[-1]}; no good checkpoint is left in {self.directory} "
                                  "(delete that run's folder to redo it from the start)")
        return None

    def _truncate_logs(self, sizes: dict[str, int]) -> None:
        for p in self.logs:
            size = sizes.get(p.name)
            if size is not None and p.is_file() and p.stat().st_size > size:
                with open(p, "r+b") as f:
                    f.truncate(size)

    def save(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any], done: bool = False) -> Path | None:
        """Write the next checkpoint, then delete all but the newest ``keep``."""
        if not self.writes:
            return self.last_saved
        self.directory.mkdir(parents=True, exist_ok=True)
        for stale in self.directory.glob(".ckpt-*.tmp"):  # left by a kill during a write
            stale.unlink(missing_ok=True)
        files = self._files()
        number = int(_NAME.match(files[-1].name).group(1)) + 1 if files else 0
        path = self.directory / f"ckpt-{number:06d}.safetensors"
        # a log not yet made has size 0: lines a resume must cut may follow in a file made after this checkpoint
        sizes = {p.name: p.stat().st_size if p.is_file() else 0 for p in self.logs}
        where = _where(path, meta, done) if faults.armed() else None
        own = {"identity": self.identity} if self.identity is not None else {}
        write_checkpoint(path, tensors, {**meta, "fingerprint": self.fingerprint, **own, "done": done,
                                         "stage": self.meta, "log_sizes": sizes}, where)
        self.prune(self.keep)
        self.last_saved = path
        return path

    def _matches(self, meta: dict[str, Any]) -> bool:
        """Was the checkpoint written by this configuration (a key added since, at its default, changes nothing)?"""
        if meta.get("fingerprint") in (self.fingerprint, *self.earlier):
            return True
        stored = meta.get("identity")
        return (isinstance(stored, dict) and self.identity is not None and self.defaults is not None
                and with_defaults(stored, self.defaults) == self.identity)

    def prune(self, keep: int) -> None:
        """Delete all checkpoints but the newest ``keep``."""
        if self.writes:
            for old in self._files()[:-keep]:
                old.unlink(missing_ok=True)


def _where(path: Path, meta: dict[str, Any], done: bool) -> str:
    """A checkpoint's place for a kill point's line: run folder, stage, and epoch/step or the stage's end."""
    stage_dir = path.parent
    run = stage_dir.parent.parent
    loop = meta.get("loop")
    at = ("stage done" if done or loop is None
          else f"epoch {loop['epoch']} step {loop['step_in_epoch']}/{loop['steps_per_epoch']}")
    return f"{run.parent.name}/{run.name} {stage_dir.name} checkpoint {path.name}, {at}"


def fingerprint(*parts: Any) -> str:
    """A short stable hash of JSON-able values (the config and the stage they apply to)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def with_defaults(stored: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """``stored`` (a configuration's identity) with the keys it lacks taken from ``defaults``
    (:func:`~tppeft.engine.config.identity_defaults`), section by section and item by item of a list of sections."""
    filled = dict(stored)
    for key, value in defaults.items():
        if key not in filled:
            filled[key] = value.default if isinstance(value, ListItems) else value
        elif isinstance(value, ListItems) and isinstance(filled[key], list):
            filled[key] = [with_defaults(item, value) if isinstance(item, dict) else item for item in filled[key]]
        elif isinstance(value, dict) and isinstance(filled[key], dict):
            filled[key] = with_defaults(filled[key], value)
    return filled


def config_match(cfg: BaseModel, *parts: Any) -> dict[str, Any]:
    """:class:`Checkpointer` keywords that tie its checkpoints to ``cfg``'s results identity and ``parts`` (a stage,
    a seed): the fingerprint, those earlier versions wrote for it (theirs also held the comparison's seed count,
    at most today's), and the identity itself with the defaults, so that a key added later changes nothing."""
    identity = results_identity(cfg)
    earlier = tuple(fingerprint({**identity, "seeds": n}, *parts) for n in range(1, getattr(cfg, "seeds", 0) + 1))
    return {"fingerprint": fingerprint(identity, *parts), "earlier": earlier, "identity": identity,
            "defaults": identity_defaults(type(cfg))}


def optimizer_to_flat(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """An optimizer's state dict as named tensors plus JSON (groups and non-tensor state values)."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, state in sd["state"].items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{idx}.{key}"] = value
            else:
                scalars.setdefault(str(idx), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_flat(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, idx, key = name.split(".", 2)
            state.setdefault(int(idx), {})[key] = value
    for idx, values in meta["scalars"].items():
        state.setdefault(int(idx), {}).update(values)
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def rng_tensors(generators: dict[str, torch.Generator]) -> dict[str, torch.Tensor]:
    """States of named generators plus torch's global CPU (and CUDA) generators."""
    out = {f"rng.{name}": g.get_state() for name, g in generators.items()}
    out["rng.torch_cpu"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["rng.torch_cuda"] = torch.cuda.get_rng_state()
    return out


def restore_rng(generators: dict[str, torch.Generator], tensors: dict[str, torch.Tensor]) -> None:
    for name, g in generators.items():
        g.set_state(tensors[f"rng.{name}"])
    torch.set_rng_state(tensors["rng.torch_cpu"])
    if "rng.torch_cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.torch_cuda"])


def prefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"{prefix}{k}": v for k, v in tensors.items()}


def unprefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def copy_into(params: Iterable[torch.Tensor], values: Iterable[torch.Tensor]) -> None:
    with torch.no_grad():
        for p, v in zip(params, values, strict=True):
            p.copy_(v)
