"""Supervised tasks of the fine-tuning stage: heads, losses and metrics, one registry by task type.

A task with options is a folder: ``config.py`` (torch-free) beside ``task.py``; ``config.py`` of this package
composes them into the ``task`` section. The registry below names each task's implementation and options; an
implementation is imported when it is first used, so that reading a configuration needs no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

from tppeft.lazy import lazy_exports, load
from tppeft.options import ConfigError, Section
from tppeft.tasks.segmentation.config import SegmentationOptions
from tppeft.tasks.volume.config import VolumeOptions

if TYPE_CHECKING:
    from tppeft.data import ImageDataset
    from tppeft.tasks.base import Task, TaskContext, TaskModel, TaskSettings
    from tppeft.tasks.classification import (
        ClassificationTask,
        Classifier,
        classification_loss,
        classification_metrics,
    )
    from tppeft.tasks.segmentation.task import SegmentationTask
    from tppeft.tasks.volume.task import VolumeTask


class Registered(NamedTuple):
    """A task: its implementation (``"module:Class"``, imported on first use) and its options, if any."""

    implementation: str
    options: type[Section] | None = None


TASK_TYPES: dict[str, Registered] = {
    "classification": Registered("tppeft.tasks.classification:ClassificationTask"),
    "segmentation": Registered("tppeft.tasks.segmentation.task:SegmentationTask", SegmentationOptions),
    "volume": Registered("tppeft.tasks.volume.task:VolumeTask", VolumeOptions),
}


def task_class(name: str) -> type[Task]:
    return load(TASK_TYPES[name].implementation)


def task_for(cfg: TaskSettings, data: ImageDataset) -> Task:
    """The task of this data kind (the reader already checked ``task.type`` against the data)."""
    for name in TASK_TYPES:
        cls = task_class(name)
        if cls.kind == data.kind:
            return cls(cfg, data)
    raise ConfigError(f"task.type: no task reads {data.kind} data; registered: {sorted(TASK_TYPES)}")


def list_tasks() -> dict[str, str]:
    return {name: task_class(name).description for name in TASK_TYPES}


_lazy_getattr, __dir__ = lazy_exports(__name__, {
    "tppeft.tasks.base": ["Task", "TaskContext", "TaskModel", "TaskSettings"],
    "tppeft.tasks.classification": ["ClassificationTask", "Classifier", "classification_loss",
                                    "classification_metrics"],
    "tppeft.tasks.segmentation.task": ["SegmentationTask"],
    "tppeft.tasks.volume.task": ["VolumeTask"],
})


def __getattr__(name: str) -> Any:
    if name == "TASKS":  # every task's description, by name
        return list_tasks()
    return _lazy_getattr(name)


__all__ = [
    "TASKS",
    "TASK_TYPES",
    "ClassificationTask",
    "Classifier",
    "Registered",
    "SegmentationTask",
    "Task",
    "TaskContext",
    "TaskModel",
    "TaskSettings",
    "VolumeTask",
    "classification_loss",
    "classification_metrics",
    "list_tasks",
    "task_class",
    "task_for",
]
