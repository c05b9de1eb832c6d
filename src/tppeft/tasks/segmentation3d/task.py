"""3D segmentation with the 2D backbone, slice by slice: the TPP stage and fine-tuning see the slices of the
training volumes (optionally with their neighbours as channels); predictions of every slice are stacked back
into volumes and scored per volume in 3D (MONAI Dice and IoU per class, averaged over the volumes)."""

from __future__ import annotations

import torch

from tppeft.data import ImageDataset, float_pixels, resize_masks
from tppeft.tasks.base import TaskContext
from tppeft.tasks.segmentation.task import SegmentationTask, summarize_scores
from tppeft.tasks.segmentation3d.scores import volume_scores
from tppeft.tasks.segmentation3d.slices import SliceInputs, SliceSplit


def preview_slices(split: SliceSplit, count: int = 4) -> list[int]:
    """Items to show: the slice with the most foreground of ``count`` volumes evenly spaced through the split."""
    volumes = split.volumes
    n, m = len(volumes), min(count, len(volumes))
    chosen = sorted({round(i * (n - 1) / max(1, m - 1)) for i in range(m)})
    owner = split.rows // volumes.labels.shape[1]
    fg = (split.item_labels() > 0).flatten(1).sum(1)
    items = []
    for v in chosen:
        mine = torch.nonzero(owner == v).flatten()
        items.append(int(mine[fg[mine].argmax()]))
    return items


class SliceSegmentationTask(SegmentationTask):
    name = kind = "segmentation3d"
    primary_metric = "dice"

    def __init__(self, cfg, data: ImageDataset):
        super().__init__(cfg, data)
        self.label_names = getattr(data, "label_names", []) or [str(k) for k in range(data.num_classes)]
        self.volume_counts = {k: len(v) for k, v in data.splits.items()}

    def metric_note(self) -> str:
        classes = ", ".join(f"{k} = {self.label_names[k]}" for k in range(1, self.num_classes))
        empty = ("left out of that class's mean" if self.cfg.task.ignore_empty
                 else "scored 1 when the prediction lacks it too, else 0")
        k = self.cfg.task.neighbour_slices
        inputs = "each slice with its two neighbours as channels" if k else "each slice on its own"
        return (f"Dice and IoU of each foreground class ({classes}) per volume in 3D (MONAI), on the volume's own "
                f"voxels, averaged over the {self.volume_counts['test']} test volumes; the 2D backbone sees "
                f"{inputs}, and the slice predictions (upsampled bilinearly from the input size) are stacked back "
                f"into volumes. A volume whose ground truth lacks a class is {empty}.")

    def prepare(self, data: ImageDataset, image_size: int) -> None:
        for name, volumes in list(data.splits.items()):
            split = SliceSplit.of(volumes, self.cfg.task.neighbour_slices)
            split.size = image_size
            split.input_labels = resize_masks(split.item_labels(), image_size)
            data.splits[name] = split
        test = data["test"]
        items = preview_slices(test)
        rows = test.rows[items]
        depth = test.volumes.labels.shape[1]
        volume, at = (rows // depth).tolist(), (rows % depth).tolist()
        self.preview = {"indices": items, "images": float_pixels(test.images[rows]),
                        "masks": test.labels[rows].clone(),
                        "labels": [f"{test.volumes.names[v]} slice {t - int(test.volumes.offset[v, 0])}"
                                   for v, t in zip(volume, at, strict=True)]}

    def pretext_images(self, split: SliceSplit) -> SliceInputs:
        return SliceInputs(split)

    def evaluate(self, ctx: TaskContext, model: torch.nn.Module, split: str) -> dict[str, float]:
        pred, loss = self.predict(ctx, model, split)
        data: SliceSplit = ctx.data[split]
        dice, iou = volume_scores(data.stack(pred), data.volumes, self.num_classes, self.cfg.task.ignore_empty)
        return {**summarize_scores(dice, iou), "loss": loss}
