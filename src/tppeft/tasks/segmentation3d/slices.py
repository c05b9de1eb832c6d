"""Volumes seen as slices: a view of a :class:`~tppeft.data.nifti.VolumeSplit` that a 2D task trains and predicts
on, item by item, and the stacking of per-slice predictions back into volumes."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tppeft.data import Split, input_pixels
from tppeft.data.nifti import VolumeSplit


@dataclass
class SliceSplit(Split):
    """The slices of a split's volumes along their depth, as items of a 2D task.

    ``images`` (N*D, 1, S, S) and ``labels`` (N*D, S, S) are views of the volumes (padding slices included);
    item ``i`` is slice ``rows[i]`` (only slices inside a volume are items), and its input channels are the
    slices ``channels[i]`` (the slice itself, or its neighbours and itself, clamped to the volume).
    ``input_labels`` are per item.
    """

    rows: torch.Tensor | None = None
    channels: torch.Tensor | None = None
    volumes: VolumeSplit | None = None

    @classmethod
    def of(cls, volumes: VolumeSplit, neighbours: int = 0) -> SliceSplit:
        n, depth = volumes.images.shape[:2]
        rows, channels = [], []
        for i in range(n):
            start, d = int(volumes.offset[i, 0]), int(volumes.extent[i, 0])
            for t in range(start, start + d):
                rows.append(i * depth + t)
                channels.append([i * depth + min(max(t + k, start), start + d - 1)
                                 for k in range(-neighbours, neighbours + 1)])
        device = volumes.images.device
        return cls(volumes.images.flatten(0, 1)[:, None], volumes.labels.flatten(0, 1), None, volumes.size,
                   torch.tensor(rows, device=device), torch.tensor(channels, device=device), volumes)

    def __len__(self) -> int:
        return len(self.rows)

    def pixels(self, idx: torch.Tensor | None = None) -> torch.Tensor:
        """Input slices ``idx`` (all without) as (B, C, H, W) float in [0, 1] at the input size."""
        picked = self.channels if idx is None else self.channels[idx]
        return input_pixels(self.images[picked, 0], self.size)

    def label_groups(self) -> torch.Tensor:
        """The volume each item is a slice of: few labels are drawn a volume at a time."""
        return self.rows // self.volumes.images.shape[1]

    def item_labels(self) -> torch.Tensor:
        """(M, S, S) ground truth of every item at the stored resolution."""
        return self.labels[self.rows]

    def stack(self, pred: torch.Tensor) -> torch.Tensor:
        """Per-item predictions (M, S, S) back into the volumes' layout (N, D, S, S); 0 outside the volumes."""
        out = torch.zeros_like(self.volumes.labels, dtype=pred.dtype)
        out.flatten(0, 1)[self.rows] = pred.to(out.device)
        return out

    def to(self, device: torch.device | str) -> SliceSplit:
        moved = SliceSplit.of(self.volumes.to(device), (self.channels.shape[1] - 1) // 2)
        moved.size = self.size
        moved.input_labels = None if self.input_labels is None else self.input_labels.to(device)
        return moved


class SliceInputs:
    """The slices of a :class:`SliceSplit` as the TPP stage indexes its images: ``inputs[idx]`` -> (B, C, H, W)
    as stored (no labels)."""

    def __init__(self, split: SliceSplit):
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, idx: torch.Tensor) -> torch.Tensor:
        return self.split.images[self.split.channels[idx], 0]
