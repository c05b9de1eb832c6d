"""The contract of a task stage: what fine-tuning trains and how it is scored (the registry of tasks is the
package's ``__init__``).

A task builds the model around the backbone (its ``head`` holds every new non-target parameter), turns
index batches into model inputs and targets, gives the loss and the metrics, and names the primary metric.
The TPP stage never sees labels: it only asks the task for the 2D images to pre-train on.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Protocol

import numpy as np
import torch
from torch import nn

from tppeft.data import ImageDataset, Split
from tppeft.engine.config import FinetuneConfig
from tppeft.options import ConfigError
from tppeft.tasks.config import TaskConfig


class TaskSettings(Protocol):
    """What a task reads of the configuration (``tppeft.config.Config`` has it)."""

    task: TaskConfig
    finetune: FinetuneConfig
    eval_batch_size: int


class TaskContext(Protocol):
    """What a task reads of a run's shared context (``tppeft.experiment.context.Context`` has it)."""

    cfg: TaskSettings
    device: torch.device
    data: ImageDataset

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) images in [0, 1] -> the backbone's normalised 3-channel input."""

    def augment(self, images: torch.Tensor, gen: torch.Generator,
                masks: torch.Tensor | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Training augmentation of (N, C, H, W) images (and their (N, H, W) masks, moved alike) if enabled."""


class TaskModel(nn.Module):
    """Backbone plus a task head; ``head`` is what the fine-tuning stage adds and saves besides the targets."""

    vit: nn.Module
    head: nn.Module


class Task:
    """One task type. Subclasses set ``name``, ``kind`` (the data kind they read) and the methods below."""

    name: ClassVar[str]
    kind: ClassVar[str]
    primary_metric: ClassVar[str]

    def __init__(self, cfg: TaskSettings, data: ImageDataset):
        self.cfg = cfg
        self.data_info = {"task": data.task, "num_classes": data.num_classes}
        self.num_classes = data.num_classes

    @property
    def metrics(self) -> list[str]:
        """Test metrics in report order; the primary metric is one of them."""
        raise NotImplementedError

    def metric_note(self) -> str:
        """One sentence for the report: how the metrics are computed."""
        return ""

    def select_metric(self) -> str:
        """The validation metric that picks the tested epoch (``finetune.select_metric``, ``auto`` = primary)."""
        chosen = self.cfg.finetune.select_metric
        if chosen == "auto":
            return self.primary_metric
        if chosen != "loss" and chosen not in self.metrics:
            raise ConfigError(f"finetune.select_metric '{chosen}' is not a metric of the {self.name} task; "
                              f"choose from {['auto', *self.metrics, 'loss']}")
        return chosen

    def prepare(self, data: ImageDataset, image_size: int) -> None:
        """Set the model's input size on every split (batches are resized to it on the device)."""
        for split in data.splits.values():
            split.size = image_size

    def pretext_images(self, split: Split) -> torch.Tensor:
        """The stored (M, C, H, W) images of ``split`` that the TPP stage pre-trains on (no labels)."""
        return split.images

    def build_model(self, vit: nn.Module) -> TaskModel:
        raise NotImplementedError

    def train_batch(self, ctx: TaskContext, idx: torch.Tensor,
                    gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Model input and targets of training items ``idx``, augmented with ``gen``."""
        raise NotImplementedError

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def evaluate(self, ctx: TaskContext, model: TaskModel, split: str) -> dict[str, float]:
        """Metrics (and ``loss``) of ``split``, no augmentation, no gradients."""
        raise NotImplementedError

    def test_metrics_of(self, keep: np.ndarray) -> dict[str, float] | None:
        """The metrics of the last test evaluation on the test images ``keep`` (a boolean mask) selects; None where
        the task cannot score part of its test split."""
        return None

    def undefined_metrics(self, data: ImageDataset, split: str) -> dict[str, str]:
        """Metrics that ``split`` cannot define whatever the model predicts, each with the reason in words."""
        return {}

    def after_test(self, ctx: TaskContext, model: TaskModel, run_dir: Path, seed: int) -> None:
        """Hook after the test evaluation of a run (e.g. save example predictions)."""

    def figures(self, ctx: TaskContext, out_dir: Path, arms: list[str]) -> list[str]:
        """Write comparison figures into ``out_dir`` at the end of a comparison; return their file names."""
        return []

