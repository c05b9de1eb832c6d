"""Volume classification with a 2D backbone: every slice is encoded by the ViT (with its target
parameters), a learned aggregation pools the slice features into one volume feature, a linear layer
classifies it. The TPP stage pre-trains the target parameters on the slices of the training volumes."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from tppeft.data import Split, input_pixels
from tppeft.distributed import per_item
from tppeft.tasks.base import TaskContext
from tppeft.tasks.classification import ClassificationTask


class AttentionPool(nn.Module):
    """Gated attention pooling over a bag of instances (Ilse et al., "Attention-based Deep Multiple
    Instance Learning", ICML 2018): weights ``softmax(w^T (tanh(V h) * sigmoid(U h)))`` over slices."""

    def __init__(self, dim: int, hidden: int = 64):
        super().__init__()
        self.v = nn.Linear(dim, hidden)
        self.u = nn.Linear(dim, hidden)
        self.w = nn.Linear(hidden, 1)

    def weights(self, h: torch.Tensor) -> torch.Tensor:
        """(B, S, D) slice features -> (B, S) weights summing to 1 over slices."""
        return torch.softmax(self.w(torch.tanh(self.v(h)) * torch.sigmoid(self.u(h))).squeeze(-1), dim=1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return (self.weights(h).unsqueeze(-1) * h).sum(1)


class MeanPool(nn.Module):
    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h.mean(1)


class SliceAggregationHead(nn.Module):
    """Slice features (B, S, D) -> pooled (B, D) -> class logits."""

    def __init__(self, dim: int, num_outputs: int, aggregation: str = "attention"):
        super().__init__()
        self.pool = AttentionPool(dim) if aggregation == "attention" else MeanPool()
        self.fc = nn.Linear(dim, num_outputs)
        nn.init.trunc_normal_(self.fc.weight, std=0.02)
        nn.init.zeros_(self.fc.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(h))


class SliceClassifier(nn.Module):
    """(B, S, 3, H, W) volumes as S slices -> ViT features per slice -> :class:`SliceAggregationHead`."""

    def __init__(self, vit: nn.Module, num_outputs: int, aggregation: str = "attention"):
        super().__init__()
        self.vit = vit
        self.head = SliceAggregationHead(vit.num_features, num_outputs, aggregation)

    def forward(self, volumes: torch.Tensor) -> torch.Tensor:
        b, s = volumes.shape[:2]
        features = self.vit(volumes.flatten(0, 1)).view(b, s, -1)
        return self.head(features)


class VolumeTask(ClassificationTask):
    name = kind = "volume"
    primary_metric = "auc"

    def metric_note(self) -> str:
        t = self.cfg.task
        train = f" ({t.train_slices} of them drawn at random per training step)" if t.train_slices else ""
        return (f"Per-volume ACC and AUC as MedMNIST v2 computes them; each volume is {t.slices or 'all'} slices "
                f"from the central {t.slice_span:.0%} of its depth{train}, pooled by {t.aggregation} aggregation.")

    def pretext_images(self, split: Split) -> torch.Tensor:
        return split.images.flatten(0, 1)  # a view: every selected slice of every volume, as stored

    def build_model(self, vit: nn.Module) -> SliceClassifier:
        return SliceClassifier(vit, self.num_classes, self.cfg.task.aggregation)

    def test_metrics_of(self, keep: np.ndarray) -> None:
        """None: near-twins are found between slices, and a volume is scored whole."""
        return None

    def train_batch(self, ctx: TaskContext, idx: torch.Tensor,
                    gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        split = ctx.data["train"]
        idx = idx.to(ctx.device)
        volumes = split.images[idx]
        k = self.cfg.task.train_slices
        if k is not None and k < volumes.shape[1]:
            s = volumes.shape[1]
            noise = per_item(len(idx), lambda m: torch.rand(m, s, generator=gen, device=gen.device)).to(volumes.device)
            pick = noise.argsort(1)[:, :k].sort(1).values  # k random slices per volume, in depth order
            volumes = volumes[torch.arange(len(idx), device=volumes.device)[:, None], pick]
        return self.inputs(ctx, input_pixels(volumes, split.size), gen), split.labels[idx]

    def inputs(self, ctx: TaskContext, volumes: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        """(B, S, C, H, W) -> normalised (B, S, 3, H, W); one crop and flip per volume, shared by its slices."""
        b, s, c = volumes.shape[:3]
        if gen is not None:
            volumes = ctx.augment(volumes.flatten(1, 2), gen).view(volumes.shape)
        x = ctx.normalise(volumes.flatten(0, 1))
        return x.view(b, s, *x.shape[1:])
