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
from tppeft.tasks.segmentation3d.config import Segmentation3DOptions
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
    description: str
    options: type[Section] | None = None


TASK_TYPES: dict[str, Registered] = {
    "classification": Registered(
        "tppeft.tasks.classification:ClassificationTask",
        "image classification (binary, multi-class, ordinal, multi-label); ACC and AUC"),
    "segmentation": Registered(
        "tppeft.tasks.segmentation.task:SegmentationTask",
        "2D segmentation: UNETR-style decoder, Dice + cross-entropy; Dice and IoU per foreground class",
        SegmentationOptions),
    "volume": Registered(
        "tppeft.tasks.volume.task:VolumeTask",
        "volume classification: 2D backbone per slice + learned slice aggregation; ACC and AUC", VolumeOptions),
    "segmentation3d": Registered(
        "tppeft.tasks.segmentation3d.task:SliceSegmentationTask",
        "3D segmentation with the 2D backbone slice by slice (UNETR-style decoder per slice); Dice and IoU per "
        "class per volume in 3D", Segmentation3DOptions),
}


# With backbone.dims: 3 (the 3D ViT) a data kind is read by its volumetric task instead.
VOLUMETRIC_TASKS: dict[str, Registered] = {
    "segmentation3d": Registered(
        "tppeft.tasks.vit3d.segmentation:Volume3DSegmentationTask",
        "3D segmentation with the 3D ViT (backbone.dims: 3) and a 3D UNETR-style decoder; Dice and IoU per class "
        "per volume"),
    "volume": Registered(
        "tppeft.tasks.vit3d.classification:Volume3DClassificationTask",
        "volume classification with the 3D ViT (backbone.dims: 3), linear head on the class token"),
}


def task_class(name: str) -> type[Task]:
    return load(TASK_TYPES[name].implementation)


def task_for(cfg: TaskSettings, data: ImageDataset) -> Task:
    """The task of this data kind (the reader already checked ``task.type`` against the data)."""
    if getattr(getattr(cfg, "backbone", None), "dims", 2) == 3:
        if data.kind not in VOLUMETRIC_TASKS:
            raise ConfigError(f"backbone.dims: 3 reads volumes (NIfTI volumes or MedMNIST-3D); {data.name} holds "
                              f"{data.kind} data")
        return load(VOLUMETRIC_TASKS[data.kind].implementation)(cfg, data)
    for name in TASK_TYPES:
        cls = task_class(name)
        if cls.kind == data.kind:
            return cls(cfg, data)
    raise ConfigError(f"task.type: no task reads {data.kind} data; registered: {sorted(TASK_TYPES)}")


def list_tasks() -> dict[str, str]:
    """Each task's one-line description, by name, the 3D ViT's as ``NAME (3D ViT)``; nothing is imported."""
    return {name: entry.description for name, entry in TASK_TYPES.items()} | {
        f"{name} (3D ViT)": entry.description for name, entry in VOLUMETRIC_TASKS.items()}


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
    "VOLUMETRIC_TASKS",
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
