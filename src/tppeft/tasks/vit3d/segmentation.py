"""3D segmentation with the 3D ViT: whole volumes, resized to the backbone's input, a 3D UNETR decoder, the same
Dice + cross-entropy loss as in 2D; predictions upsampled back to the stored volumes and scored per volume in 3D
(MONAI Dice and IoU per class on each volume's own voxels, averaged over the volumes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tppeft import distributed
from tppeft.data import ImageDataset, float_pixels, iterate_batches
from tppeft.data.nifti import VolumeSplit
from tppeft.data.volume_transforms import augment_volumes, resize_label_volumes, resize_volumes
from tppeft.options import ConfigError
from tppeft.rundir import RunPaths
from tppeft.tasks.base import TaskContext
from tppeft.tasks.segmentation.task import SegmentationTask, summarize_scores
from tppeft.tasks.segmentation3d.scores import volume_scores
from tppeft.tasks.vit3d.decoder import ViTSegmenter3D

EVAL_VOLUMES = 4  # volumes per evaluation batch: a 3D decoder's full-resolution maps are large


def preview_volumes(labels: torch.Tensor, count: int = 4) -> list[tuple[int, int]]:
    """(volume, slice) pairs to show: ``count`` volumes evenly spaced, each at its slice with most foreground."""
    n, m = len(labels), min(count, len(labels))
    chosen = sorted({round(i * (n - 1) / max(1, m - 1)) for i in range(m)})
    return [(v, int((labels[v] > 0).flatten(1).sum(1).argmax())) for v in chosen]


class Volume3DSegmentationTask(SegmentationTask):
    name = kind = "segmentation3d"
    primary_metric = "dice"

    def __init__(self, cfg, data: ImageDataset):
        super().__init__(cfg, data)
        self.label_names = getattr(data, "label_names", []) or [str(k) for k in range(data.num_classes)]
        self.volume_counts = {k: len(v) for k, v in data.splits.items()}
        self.input_shape: tuple[int, int, int] = (cfg.backbone.volume_depth, 0, 0)

    def metric_note(self) -> str:
        classes = ", ".join(f"{k} = {self.label_names[k]}" for k in range(1, self.num_classes))
        empty = ("left out of that class's mean" if self.cfg.task.ignore_empty
                 else "scored 1 when the prediction lacks it too, else 0")
        d, h, w = self.input_shape
        return (f"Dice and IoU of each foreground class ({classes}) per volume in 3D (MONAI), on the volume's own "
                f"voxels, averaged over the {self.volume_counts['test']} test volumes; the 3D ViT sees each volume "
                f"resized to {d}x{h}x{w} and its logits are upsampled trilinearly to the stored volume. A volume "
                f"whose ground truth lacks a class is {empty}.")

    def prepare(self, data: ImageDataset, image_size: int) -> None:
        self.input_shape = (self.cfg.backbone.volume_depth, image_size, image_size)
        test: VolumeSplit = data["test"]
        shown = preview_volumes(test.labels)
        self.preview = {"indices": [v for v, _ in shown], "slices": [t for _, t in shown],
                        "images": float_pixels(torch.stack([test.images[v, t] for v, t in shown]))[:, None],
                        "masks": torch.stack([test.labels[v, t] for v, t in shown]),
                        "labels": [f"{test.names[v]} slice {t - int(test.offset[v, 0])}" for v, t in shown]}
        for split in data.splits.values():  # the model's input, resized once; labels stay as stored for scoring
            split.input_labels = resize_label_volumes(split.labels, self.input_shape)
            split.images = resize_volumes(split.images, self.input_shape)
            split.size = None

    def build_model(self, vit: nn.Module) -> ViTSegmenter3D:
        return ViTSegmenter3D(vit, self.num_classes, self.cfg.task.decoder_channels, self.cfg.task.feature_blocks)

    def train_batch(self, ctx: TaskContext, idx: torch.Tensor,
                    gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        split = ctx.data["train"]
        idx = idx.to(ctx.device)
        volumes, labels = split.images[idx], split.input_labels[idx]
        d = ctx.cfg.data
        if gen is not None and d.augment:
            volumes, labels = augment_volumes(volumes, labels, gen, d.crop_scale, d.hflip, d.vflip)
        return ctx.normalise(volumes), labels

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if distributed.share_weight() is not None:
            raise ConfigError("3D segmentation with backbone.dims: 3 runs in one process (its batch Dice is not "
                              "shared between processes); spread seeds as jobs instead (tppeft run --only)")
        return self.criterion(outputs, targets[:, None].long())

    @torch.inference_mode()
    def predict(self, ctx: TaskContext, model: nn.Module, split: str,
                idx: torch.Tensor | None = None) -> tuple[torch.Tensor, float]:
        """Predicted class ids (N, D, S, S) laid out as the stored volumes, and the mean loss at the input size."""
        model.eval()
        data = ctx.data[split]
        items = torch.arange(len(data)) if idx is None else torch.as_tensor(idx)
        preds, loss_sum = [], torch.zeros((), device=ctx.device, dtype=torch.float64)
        for batch in iterate_batches(len(items), EVAL_VOLUMES):
            b = items[batch].to(ctx.device)
            logits = model(ctx.normalise(data.images[b]))
            loss_sum += self.loss(logits, data.input_labels[b]).double() * len(b)
            full = F.interpolate(logits.float(), size=data.labels.shape[-3:], mode="trilinear", align_corners=False)
            preds.append(full.argmax(1).to(torch.uint8))
        model.train()
        return torch.cat(preds), float(loss_sum) / len(items)

    def evaluate(self, ctx: TaskContext, model: nn.Module, split: str) -> dict[str, float]:
        pred, loss = self.predict(ctx, model, split)
        dice, iou = volume_scores(pred, ctx.data[split], self.num_classes, self.cfg.task.ignore_empty)
        return {**summarize_scores(dice, iou), "loss": loss}

    def after_test(self, ctx: TaskContext, model: nn.Module, run_dir: Path, seed: int) -> None:
        if seed == 0 and self.preview.get("indices"):
            pred, _ = self.predict(ctx, model, "test", self.preview["indices"])
            shown = torch.stack([pred[i, t] for i, t in enumerate(self.preview["slices"])])
            np.savez_compressed(RunPaths(run_dir).examples, indices=np.array(self.preview["indices"]),
                                slices=np.array(self.preview["slices"]), pred=shown.cpu().numpy())
