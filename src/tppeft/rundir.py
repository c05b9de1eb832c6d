"""The run folder: every file name of the layout a command writes, in one place.

A comparison folder (``tppeft run``)::

    config.yaml        the resolved configuration; its presence marks a tppeft folder
    command.json       the command that made the folder (for --resume)
    results.jsonl      one line per finished run (arm x seed)
    summary.json       every number; its presence marks a complete comparison
    report.md, report.html, <figure>.png
    runs/<arm>/seed<k>/   one run: see :class:`RunPaths`

A stage command's folder (``tppeft pretrain`` / ``finetune``) is a :class:`RunFolder` whose root is also the
run's :class:`RunPaths`. A sweep folder holds ``sweep.json``, ``sweep.md`` and ``cells/<name>/`` (comparison
folders). No other module spells these names.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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
PRETEXT_RECORD = "pretext.json"
SWEEP = "sweep.json"
SWEEP_MD = "sweep.md"
CELLS = "cells"


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
    def pretext_record(self) -> Path:
        """``tppeft pretrain``: the TPP stage's record."""
        return self.root / PRETEXT_RECORD


@dataclass(frozen=True)
class RunFolder:
    """A folder made by a command: comparison, stage command, sweep (whose cells are comparisons)."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

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
