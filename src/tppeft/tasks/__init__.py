"""Supervised tasks of the fine-tuning stage: heads, losses and metrics."""

from tppeft.tasks.classification import Classifier, classification_loss, classification_metrics

TASKS = {"classification": "image classification (binary, multi-class, ordinal, multi-label); ACC and AUC"}

__all__ = ["TASKS", "Classifier", "classification_loss", "classification_metrics"]
