"""The run folder: every file name of the layout a command writes, and the folder's life (checks before
anything is written, creation, overwrite, resume, markers), in one place.

A comparison folder (``tppeft run``)::

    config.yaml        the resolved configuration; its presence marks a tppeft folder
    command.json       the command that made the folder (for --resume)
    results.jsonl      one line per finished run (arm x seed)
    summary.json       every number; its presence marks a complete comparison
    report.md, report.html, <figure>.png   (examples.png: segmentation's example masks; roc_curves.png:
                                           classification's ROC curves)
    runs/<arm>/seed<k>/   one run: see :class:`RunPaths`
    runs/<arm>/stage/     the one TPP stage of ``pretext.stage_seed`` (a :class:`RunPaths` too)

A stage command's folder (``tppeft pretrain`` / ``finetune``) is a :class:`RunFolder` whose root is also the
run's :class:`RunPaths`. A sweep folder holds ``sweep.json``, ``sweep.md`` and ``cells/<name>/`` (comparison
folders). No other module spells these names.

A new folder is checked (:meth:`RunFolder.check_new`) before anything that stays is written, then made
(:meth:`RunFolder.create`); ``--resume`` reopens one (:meth:`RunFolder.reopen_for_resume`). Writes are atomic
(:mod:`tppeft.io`).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from tppeft.io import config_to_yaml, differing_digests, file_sha256, read_jsonl, write_json, write_text

if TYPE_CHECKING:
    from collections.abc import Iterator

    from pydantic import BaseModel

CONFIG = "config.yaml"
COMMAND = "command.json"
RESULTS = "results.jsonl"
SUMMARY = "summary.json"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
RUNS = "runs"
METRICS = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
TARGET_PARAMS = "target_params"
FINETUNED = "finetuned"
HEAD = "head.safetensors"
EXAMPLES = "examples.npz"
TEST_SCORES = "test_scores.npz"
TENSORBOARD = "tensorboard"
PRETEXT_RECORD = "pretext.json"
STAGE_FOLDER = "stage"  # a comparison's shared TPP stage, beside the arm's seed<k> folders
STAGE_RECORDS = {"pretrain": PRETEXT_RECORD, "finetune": RESULTS}  # a stage command's folder: its record
SWEEP = "sweep.json"
SWEEP_MD = "sweep.md"
CELLS = "cells"
# Set in the environment of a worker of ``tppeft run --jobs``: the comparison's folder, which a resume names.
JOBS_FOLDER_ENV = "TPPEFT_JOBS_FOLDER"
EXAMPLES_FIGURE = "examples.png"
ROC_FIGURE = "roc_curves.png"
DEFAULT_PARENT = "runs"  # where a command's folder goes when no --output is given
TIMING_KEYS = ("seconds", "finetune_seconds")  # what differs between an interrupted run and an uninterrupted one
PROVENANCE_KEYS = ("revision",)  # the code's commit a run was made from: the part of a resumed run made later may
# come from a later one (or from a checkout being edited), with the same numbers


class OutputError(RuntimeError):
    """An output folder that cannot be used as asked."""


@dataclass(frozen=True)
class RunPaths:
    """The files of one run (an arm and a seed of a comparison, or a stage command's folder)."""

    root: Path

    @property
    def metrics(self) -> Path:
        """Per-epoch lines of both stages."""
        return self.root / METRICS

    @property
    def checkpoints_root(self) -> Path:
        return self.root / CHECKPOINTS

    def checkpoints(self, stage: str) -> Path:
        """Checkpoints of one stage (``pretext`` or ``finetune``) while the run is unfinished."""
        return self.root / CHECKPOINTS / stage

    def drop_checkpoints(self) -> None:
        """Delete the run's checkpoints (once it has finished and they are not kept)."""
        shutil.rmtree(self.checkpoints_root, ignore_errors=True)

    @property
    def target_params(self) -> Path:
        """The target parameters the TPP stage pre-trained."""
        return self.root / TARGET_PARAMS

    @property
    def finetuned(self) -> Path:
        """The fine-tuned target parameters and the task head."""
        return self.root / FINETUNED

    @property
    def head(self) -> Path:
        return self.root / FINETUNED / HEAD

    @property
    def examples(self) -> Path:
        """Segmentation: predicted masks of a few test images (seed 0)."""
        return self.root / EXAMPLES

    @property
    def test_scores(self) -> Path:
        """Classification: the test split's scores and labels (for the ROC curves)."""
        return self.root / TEST_SCORES

    @property
    def tensorboard(self) -> Path:
        """TensorBoard event files of both stages (``log.tensorboard``)."""
        return self.root / TENSORBOARD

    @property
    def pretext_record(self) -> Path:
        """``tppeft pretrain``: the TPP stage's record."""
        return self.root / PRETEXT_RECORD


@dataclass(frozen=True)
class RunFolder:
    """A folder made by a command: comparison, stage command, sweep (whose cells are comparisons)."""

    root: Path
    spelled: str = field(init=False, repr=False, compare=False)  # the folder as given (quoted in messages)

    def __post_init__(self) -> None:
        object.__setattr__(self, "spelled", str(self.root))
        object.__setattr__(self, "root", Path(self.root))

    @classmethod
    def at(cls, output: str | Path | None, kind: str) -> RunFolder:
        """``output``, or ``runs/<kind>-<time>`` when none is given."""
        return cls(output or Path(DEFAULT_PARENT) / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}")

    @property
    def config(self) -> Path:
        return self.root / CONFIG

    @property
    def command(self) -> Path:
        return self.root / COMMAND

    @property
    def results(self) -> Path:
        return self.root / RESULTS

    @property
    def summary(self) -> Path:
        return self.root / SUMMARY

    @property
    def report_md(self) -> Path:
        return self.root / REPORT_MD

    @property
    def report_html(self) -> Path:
        return self.root / REPORT_HTML

    def figure(self, name: str) -> Path:
        """A figure of the report (``name`` without the folder, e.g. ``loss_curves.png``)."""
        return self.root / name

    @property
    def runs_root(self) -> Path:
        return self.root / RUNS

    def run(self, arm: str, seed: int) -> RunPaths:
        return RunPaths(self.root / RUNS / arm / f"seed{seed}")

    def runs(self) -> Iterator[RunPaths]:
        """Every run folder there is (``runs/<arm>/seed<k>``), in name order."""
        for path in sorted(self.runs_root.glob("*/seed*")):
            if path.is_dir():
                yield RunPaths(path)

    @property
    def own_run(self) -> RunPaths:
        """A stage command's folder is its own run."""
        return RunPaths(self.root)

    @property
    def sweep(self) -> Path:
        return self.root / SWEEP

    @property
    def sweep_md(self) -> Path:
        return self.root / SWEEP_MD

    def cell(self, name: str) -> RunFolder:
        return RunFolder(self.root / CELLS / name)

    def is_tppeft(self) -> bool:
        """The folder holds something a tppeft command made."""
        return self.config.is_file()

    def is_complete(self) -> bool:
        """A comparison that finished (its summary was written)."""
        return self.summary.is_file()

    # -- a new folder ---------------------------------------------------------------------------------------

    def check_new(self, overwrite: bool, need_bytes: int = 0) -> RunFolder:
        """Everything :meth:`create` needs, checked without writing anything that stays.

        The folder must be empty or absent (or hold a tppeft run and ``overwrite``), its nearest existing
        ancestor must be a writable folder, and its file system should have ``need_bytes`` free.
        """
        directory = self.root
        if directory.exists() and not directory.is_dir():
            raise OutputError(f"output '{directory}' is a file, not a folder")
        if directory.is_dir() and any(directory.iterdir()):
            if not overwrite:
                hint = " or resume it with --resume" if self.is_tppeft() else ""
                raise OutputError(f"output folder '{directory}' is not empty; pass --overwrite to replace it{hint}, "
                                  "or choose another --output")
            if not self.is_tppeft():
                raise OutputError(f"output folder '{directory}' is not empty and holds no tppeft run "
                                  f"({CONFIG}); refusing to delete it even with --overwrite")
        self.check_writable(need_bytes)
        return self

    def check_writable(self, need_bytes: int = 0) -> None:
        """The folder (or the nearest folder above it that exists) takes files and has ``need_bytes`` free."""
        directory = self.root
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
            raise OutputError(f"output folder '{directory}': only {free / 2**20:.0f} MiB free on its file system, "
                              f"and this run needs about {need_bytes / 2**20:.0f} MiB; free space or choose another "
                              "--output")

    def create(self, overwrite: bool, cfg: BaseModel | None = None, command: dict | None = None) -> RunFolder:
        """Make the folder ready for a new run (call :meth:`check_new` first): an existing run is replaced only
        with ``overwrite``; then ``config.yaml`` from ``cfg`` and ``command.json`` from ``command``, when given."""
        if self.root.is_dir() and any(self.root.iterdir()) and overwrite:
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        if cfg is not None:
            self.write_config(cfg)
        if command is not None:
            self.write_command(command)
        return self

    def prepare(self, overwrite: bool, cfg: BaseModel | None = None, command: dict | None = None) -> RunFolder:
        """:meth:`check_new`, then :meth:`create`."""
        return self.check_new(overwrite).create(overwrite, cfg, command)

    def prepare_sweep(self, resume: bool, overwrite: bool) -> RunFolder:
        """A sweep's folder: with ``resume`` an existing sweep is kept as it is, otherwise :meth:`prepare`."""
        if resume and self.root.exists() and any(self.root.iterdir()):
            if not self.sweep.is_file() and not self.is_tppeft():
                raise OutputError(f"--resume: '{self.root}' holds no tppeft sweep ({SWEEP})")
            return self
        return self.prepare(overwrite)

    def write_config(self, cfg: BaseModel | str) -> None:
        """``config.yaml``: the resolved configuration (or the text of another folder's)."""
        write_text(self.config, cfg if isinstance(cfg, str) else config_to_yaml(cfg))

    def write_command(self, command: dict) -> None:
        """``command.json``: the command that made the folder (and a stage command's seed and init)."""
        write_json(self.command, command)

    # -- an existing folder ---------------------------------------------------------------------------------

    def saved_command(self, command: str) -> dict:
        """What the folder, to be resumed by ``command``, was made by (its command, a stage command's seed and
        init); a folder made by another command is an :class:`OutputError`."""
        if not self.command.is_file() and command == "run" and self.is_tppeft():
            return {"command": "run"}
        try:
            saved = json.loads(self.command.read_text())
        except (OSError, json.JSONDecodeError):
            raise OutputError(f"'{self.spelled}' holds no tppeft run to resume ({COMMAND} missing or "
                              "unreadable)") from None
        if saved.get("command") != command:
            raise OutputError(f"'{self.spelled}' holds a '{saved.get('command')}' run; resume it with "
                              f"tppeft {saved.get('command')} --resume {self.spelled}")
        return saved

    def made_by(self) -> str | None:
        """The command that made the folder, as ``command.json`` records it (None: not recorded)."""
        try:
            return json.loads(self.command.read_text()).get("command")
        except (OSError, json.JSONDecodeError, AttributeError):
            return None

    def is_unfinished_comparison(self) -> bool:
        """A comparison (not a stage command's folder) with no summary yet: running, or stopped."""
        return not self.is_complete() and self.is_tppeft() and self.made_by() not in STAGE_RECORDS

    def saved_seeds(self) -> int | None:
        """The seed count ``config.yaml`` holds."""
        return yaml.safe_load(self.config.read_text()).get("seeds")

    def _steps(self, key: str) -> list:
        """``command.json``'s record ``key`` of the steps by which resuming changed the comparison, oldest first."""
        try:
            return list(json.loads(self.command.read_text()).get(key, []))
        except (OSError, json.JSONDecodeError):
            return []

    def _add_steps(self, key: str, steps: list) -> None:
        """Record ``steps`` under ``key`` in ``command.json``; the summary and report go (the finished comparison
        writes them again)."""
        command = json.loads(self.command.read_text()) if self.command.is_file() else {"command": "run"}
        command[key] = [*command.get(key, []), *steps]
        self.write_command(command)
        for stale in (self.summary, self.report_md, self.report_html):
            stale.unlink(missing_ok=True)

    def seeds_added(self) -> list[dict]:
        """The steps by which ``--resume --set seeds=N`` grew the comparison, oldest first."""
        return self._steps("seeds_added")

    def grow_seeds(self, cfg: BaseModel, before: int) -> None:
        """Make the comparison of ``before`` seeds ``cfg``'s, with more: ``config.yaml`` says so, ``command.json``
        records the step, and the summary and report of the fewer seeds go."""
        self._add_steps("seeds_added", [{"from": before, "to": cfg.seeds}])
        self.write_config(cfg)

    def redone(self) -> list[str]:
        """The runs ``--resume --redo ARM:SEED`` made again, as ``ARM:SEED``, oldest first."""
        return self._steps("redone")

    def forget_runs(self, pairs: set[tuple[str, int]]) -> list[tuple[str, int]]:
        """``--resume --redo``: each run's line leaves ``results.jsonl`` and its folder goes, so that the resumed
        comparison makes it again from the start; ``command.json`` records the step (``redone``) and the summary
        and report go (the finished comparison writes them again). Returns the pairs that had a line."""
        records = read_jsonl(self.results, repair=True) if self.results.is_file() else []
        dropped = [(r["arm"], r["seed"]) for r in records if (r["arm"], r["seed"]) in pairs]
        if dropped:  # the lines as append_jsonl wrote them
            write_text(self.results, "".join(json.dumps(r) + "\n" for r in records
                                             if (r["arm"], r["seed"]) not in pairs))
        for arm, seed in sorted(pairs):
            shutil.rmtree(self.run(arm, seed).root, ignore_errors=True)
        self._add_steps("redone", [f"{a}:{s}" for a, s in sorted(pairs)])
        return dropped

    def check_images(self, digests: dict[str, str], write: bool = True) -> None:
        """The SHA-256 of each split (``data.split_sha256``) the folder's runs are made on: recorded in
        ``command.json`` at the first start (``write``: by this process); a later start on other images (the data
        file replaced before a ``--resume``) is an :class:`OutputError`, since one comparison would mix two data
        sets. A folder without ``command.json`` (a sweep's cell made before cells had one) is not checked."""
        if not self.command.is_file():
            return
        command = json.loads(self.command.read_text())
        saved = command.get("split_sha256")
        if saved is None and write:
            self.write_command({**command, "split_sha256": digests})
        elif saved is not None and (differ := differing_digests(saved, digests)):
            raise OutputError(f"'{self.spelled}': its runs were made on other images than the data reads now (the "
                              f"SHA-256 of the {', '.join(differ)} split(s) differs from the one {COMMAND} "
                              "recorded: was the data file replaced?); continuing would mix two data sets in one "
                              "comparison. Restore the data, or start the comparison again in another folder")

    def reopen_for_resume(self, command: str) -> dict:
        """Check that the folder holds a run ``command`` made and can continue; returns :meth:`saved_command`."""
        if not self.is_tppeft():
            raise OutputError(f"'{self.root}' holds no tppeft run to resume (no {CONFIG})")
        return self.saved_command(command)

    def holds_config(self, cfg: BaseModel) -> bool:
        """``config.yaml`` is exactly ``cfg`` (a sweep's cell made with the same configuration)."""
        return self.config.is_file() and self.config.read_text() == config_to_yaml(cfg)

    def require_complete(self) -> None:
        """A finished comparison, or an :class:`OutputError` that says how to finish it."""
        if not self.is_complete():
            made_by = self.made_by()
            if made_by in STAGE_RECORDS:
                raise OutputError(f"'{self.root}' holds a `tppeft {made_by}` stage, not a comparison: its record is "
                                  f"{STAGE_RECORDS[made_by]}; `tppeft report` reads the folders `tppeft run` and "
                                  "`tppeft merge` write")
            hint = (f"; the run is incomplete: resume it with tppeft run --resume {self.root}"
                    if self.is_tppeft() else "")
            raise OutputError(f"'{self.root}' has no {SUMMARY}{hint}")

    def finish_stage(self, keep_checkpoints: bool) -> None:
        """A stage command's folder once its stage is done: its checkpoints go unless kept."""
        if not keep_checkpoints:
            self.own_run.drop_checkpoints()


def _existing_ancestor(directory: Path) -> Path:
    p = directory.absolute()
    while not p.exists():
        p = p.parent
    return p


def estimate_run_bytes(trainable: int, runs: int, keep_checkpoints: bool) -> int:
    """Disk a folder of ``runs`` runs needs, ``trainable`` float32 parameters each: per run two saved copies
    (target parameters, fine-tuned weights); checkpoints (weights, two Adam moments, best copy; two per stage,
    two stages) for one run at a time, or for every run when they are kept."""
    per_copy = 4 * trainable
    checkpoints = 2 * 2 * 4 * per_copy + 2**16
    return runs * 2 * per_copy + (max(runs, 1) if keep_checkpoints else 1) * checkpoints + 2**20


def comparable_outputs(run_dir: str | Path) -> dict:
    """What a comparison folder holds that must not depend on interruptions or the machine's speed: its
    results and metrics lines without timings or the code's commit, and the SHA-256 of every weight file (resume
    checks)."""
    def strip(rec: dict) -> dict:
        rec = {k: v for k, v in rec.items() if k not in (*TIMING_KEYS, *PROVENANCE_KEYS)}
        if isinstance(rec.get("pretext"), dict):
            rec["pretext"] = strip(rec["pretext"])
        return rec

    folder = RunFolder(run_dir)
    out = folder.root
    result = {"results": [strip(r) for r in read_jsonl(folder.results)]}
    for run in folder.runs():
        if run.metrics.is_file():
            result[str(run.metrics.relative_to(out))] = [strip(r) for r in read_jsonl(run.metrics)]
    for path in sorted(folder.runs_root.glob("**/*.safetensors")):
        result[str(path.relative_to(out))] = file_sha256(path)
    return result
