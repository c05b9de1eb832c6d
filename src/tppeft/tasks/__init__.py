"""Supervised tasks of the fine-tuning stage: heads, losses and metrics, one registry by task type."""

from tppeft.tasks.base import Task, TaskModel, list_tasks, task_for
from tppeft.tasks.classification import (
    ClassificationTask,
    Classifier,
    classification_loss,
    classification_metrics,
)
from tppeft.tasks.segmentation import SegmentationTask
from tppeft.tasks.volume import VolumeTask

TASKS = list_tasks()

__all__ = [
    "TASKS",
    "ClassificationTask",
    "Classifier",
    "SegmentationTask",
    "Task",
    "TaskModel",
    "VolumeTask",
    "classification_loss",
    "classification_metrics",
    "list_tasks",
    "task_for",
]
