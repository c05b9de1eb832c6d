"""Classification head and the MedMNIST metrics (ACC, AUC)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from torch import nn


class Classifier(nn.Module):
    """Backbone features (timm's pooled output, class token by default) -> linear head."""

    def __init__(self, vit: nn.Module, num_outputs: int):
        super().__init__()
        self.vit = vit
        self.head = nn.Linear(vit.num_features, num_outputs)
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.vit(images))


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, task: str,
                        label_smoothing: float = 0.0) -> torch.Tensor:
    if task == "multilabel":
        return F.binary_cross_entropy_with_logits(logits, labels.float())
    return F.cross_entropy(logits, labels, label_smoothing=label_smoothing)


def scores_from_logits(logits: torch.Tensor, task: str) -> torch.Tensor:
    return torch.sigmoid(logits) if task == "multilabel" else torch.softmax(logits, dim=1)


def classification_metrics(labels: np.ndarray, scores: np.ndarray, task: str) -> dict[str, float]:
    """ACC and AUC as MedMNIST v2 computes them.

    Binary: AUC of the positive-class score, ACC at threshold 0.5. Multi-class (ordinal included):
    AUC one-vs-rest averaged over classes, ACC of the arg-max. Multi-label: both averaged over labels,
    ACC at threshold 0.5. A class absent from ``labels`` is left out of the AUC average.
    """
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    if task == "multilabel":
        aucs = [roc_auc_score(labels[:, i], scores[:, i]) for i in range(labels.shape[1])
                if 0 < labels[:, i].sum() < len(labels)]
        acc = float(((scores > 0.5) == labels).mean())
    elif scores.shape[1] == 2:
        aucs = [roc_auc_score(labels, scores[:, 1])] if 0 < labels.sum() < len(labels) else []
        acc = float(((scores[:, 1] > 0.5).astype(int) == labels).mean())
    else:
        aucs = [roc_auc_score(labels == c, scores[:, c]) for c in range(scores.shape[1])
                if 0 < (labels == c).sum() < len(labels)]
        acc = float((scores.argmax(1) == labels).mean())
    auc = float(np.mean(aucs)) if aucs else float("nan")
    return {"acc": acc, "auc": auc}
