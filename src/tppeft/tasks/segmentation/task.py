"""Segmentation: UNETR-style decoder on the ViT, Dice + cross-entropy loss (MONAI), Dice and IoU metrics
(MONAI) at the stored resolution of the masks, and example figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tppeft import distributed
from tppeft.data import ImageDataset, float_pixels, iterate_batches, resize_masks
from tppeft.rundir import EXAMPLES_FIGURE, RunFolder, RunPaths
from tppeft.tasks.base import Task, TaskContext
from tppeft.tasks.decoders import ViTSegmenter
from tppeft.tasks.figures import write_mask_grid


def segmentation_scores(pred: torch.Tensor, truth: torch.Tensor, num_classes: int,
                        ignore_empty: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image, per-foreground-class Dice and IoU, each (N, num_classes - 1), by MONAI's definitions.

    ``pred`` and ``truth`` are (N, H, W) class ids. Where the ground truth of an image lacks a class, MONAI's
    ``ignore_empty=True`` (the default of its ``DiceMetric``) gives NaN, so that image is left out of that
    class's mean; ``ignore_empty=False`` gives 1 if the prediction lacks the class too, else 0.
    """
    from monai.metrics import compute_dice, compute_iou  # imported here: monai is slow to import

    p = F.one_hot(pred.long(), num_classes).permute(0, 3, 1, 2).float()
    t = F.one_hot(truth.long(), num_classes).permute(0, 3, 1, 2).float()
    dice = compute_dice(p, t, include_background=False, ignore_empty=ignore_empty, num_classes=num_classes)
    iou = compute_iou(p, t, include_background=False, ignore_empty=ignore_empty)
    return dice, iou


def summarize_scores(dice: torch.Tensor, iou: torch.Tensor) -> dict[str, float]:
    """Mean over images per class (NaN = left out) and the mean over foreground classes.

    Keys: ``dice`` and ``iou`` (mean over classes); with more than one foreground class also ``dice_<k>``
    and ``iou_<k>`` per class id ``k``.
    """
    out: dict[str, float] = {}
    for name, scores in (("dice", dice), ("iou", iou)):
        per_class = [float(torch.nanmean(scores[:, c])) if scores.shape[0] else float("nan")
                     for c in range(scores.shape[1])]
        finite = [v for v in per_class if np.isfinite(v)]
        out[name] = float(np.mean(finite)) if finite else float("nan")
        if len(per_class) > 1:
            out.update({f"{name}_{c + 1}": v for c, v in enumerate(per_class)})
    return out


def preview_indices(masks: torch.Tensor, count: int = 4) -> list[int]:
    """Test images to show: evenly spaced ones with a foreground, plus one with an empty ground truth."""
    has_fg = (masks.flatten(1) > 0).any(1)
    fg, empty = torch.nonzero(has_fg).flatten().tolist(), torch.nonzero(~has_fg).flatten().tolist()
    m = min(count - (1 if empty else 0), len(fg))
    chosen = [fg[round(i * (len(fg) - 1) / max(1, m - 1))] for i in range(m)]
    return sorted(set(chosen + empty[:1]))


class SegmentationTask(Task):
    name = kind = "segmentation"
    primary_metric = "dice"

    def __init__(self, cfg, data: ImageDataset):
        super().__init__(cfg, data)
        from monai.losses import DiceCELoss

        t = cfg.task
        # Dice over the whole batch (batch=True) and over foreground classes only: images with an empty
        # ground truth then still give a defined, useful Dice term, and background does not dilute it.
        self.criterion = DiceCELoss(include_background=False, to_onehot_y=True, softmax=True, batch=True,
                                    lambda_dice=t.dice_weight, lambda_ce=t.ce_weight)
        self.stored_size = tuple(data["test"].labels.shape[-2:])
        self.preview: dict = {}

    @property
    def metrics(self) -> list[str]:
        fg = range(1, self.num_classes)
        per_class = [f"{m}_{k}" for m in ("dice", "iou") for k in fg] if self.num_classes > 2 else []
        return ["dice", "iou", *per_class]

    def metric_note(self) -> str:
        h, w = self.stored_size
        empty = ("left out of that class's mean (MONAI's `ignore_empty=True`)" if self.cfg.task.ignore_empty
                 else "scored 1 when the prediction is empty too, else 0 (MONAI's `ignore_empty=False`)")
        return (f"Dice and IoU of the foreground class{'es' if self.num_classes > 2 else ''} (MONAI), per image, "
                f"averaged over the full split at the stored {h}x{w} resolution (predictions upsampled "
                f"bilinearly from the input size); an image whose ground truth lacks a class is {empty}.")

    def prepare(self, data: ImageDataset, image_size: int) -> None:
        test = data["test"]
        idx = preview_indices(test.labels)
        self.preview = {"indices": idx, "images": float_pixels(test.images[idx]),
                        "masks": test.labels[idx].clone()}
        super().prepare(data, image_size)
        for split in data.splits.values():
            split.input_labels = resize_masks(split.labels, image_size)

    def build_model(self, vit: nn.Module) -> ViTSegmenter:
        return ViTSegmenter(vit, self.num_classes, self.cfg.task.decoder_channels, self.cfg.task.feature_blocks)

    def train_batch(self, ctx: TaskContext, idx: torch.Tensor,
                    gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        split = ctx.data["train"]
        idx = idx.to(ctx.device)
        images, masks = split.pixels(idx), split.input_labels[idx]
        if gen is not None:
            images, masks = ctx.augment(images, gen, masks)
        return ctx.normalise(images), masks

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        weight = distributed.share_weight()
        if weight is None:
            return self.criterion(outputs, targets[:, None].long())
        return self._shared_loss(outputs, targets, weight)

    def _shared_loss(self, outputs: torch.Tensor, targets: torch.Tensor, weight: float) -> torch.Tensor:
        """The loss of a training step's share of the batch under torchrun, equal in value and gradient to
        MONAI's batch Dice + cross-entropy of the whole batch: the Dice sums are added over processes
        (differentiably) and the Dice term divided by the loop's share weight, which it does not need."""
        c = self.criterion
        ce = c.ce(outputs, targets[:, None].long())
        probs = torch.softmax(outputs.float(), dim=1)[:, 1:]  # foreground classes, as include_background=False
        onehot = F.one_hot(targets.long(), self.num_classes).permute(0, 3, 1, 2)[:, 1:].to(probs.dtype)
        axes = [0, 2, 3]
        tp = (probs * onehot).sum(axes)
        sums = distributed.all_sum_grad(torch.stack([tp, probs.sum(axes) - tp, onehot.sum(axes) - tp]))
        tp, fp, fn = sums
        dice = (1 - (2 * tp + c.dice.smooth_nr) / (2 * tp + fp + fn + c.dice.smooth_dr)).mean()
        return c.lambda_ce * ce + c.lambda_dice * dice / weight

    @torch.inference_mode()
    def predict(self, ctx: TaskContext, model: nn.Module, split: str,
                idx: torch.Tensor | None = None) -> tuple[torch.Tensor, float]:
        """Predicted class ids at the stored resolution (N, H, W) and the mean loss at the input resolution,
        of images ``idx`` (this process alone) or of the whole split (under torchrun: each process predicts
        its share and the predictions are gathered)."""
        model.eval()
        data = ctx.data[split]
        items = torch.arange(*distributed.eval_share(len(data))) if idx is None else torch.as_tensor(idx)
        preds, loss_sum = [], torch.zeros((), device=ctx.device, dtype=torch.float64)
        for batch in iterate_batches(len(items), ctx.cfg.eval_batch_size):
            b = items[batch].to(ctx.device)
            logits = model(ctx.normalise(data.pixels(b)))
            loss_sum += self.loss(logits, data.input_labels[b]).double() * len(b)
            full = F.interpolate(logits.float(), size=data.labels.shape[-2:], mode="bilinear", align_corners=False)
            preds.append(full.argmax(1).to(torch.uint8))
        model.train()
        if idx is None:  # the whole split, shared between the processes under torchrun
            loss = distributed.eval_sum(loss_sum, len(data))
            return distributed.gather_rows(torch.cat(preds), len(data)), float(loss) / len(data)
        return torch.cat(preds), float(loss_sum) / len(items)

    def evaluate(self, ctx: TaskContext, model: nn.Module, split: str) -> dict[str, float]:
        pred, loss = self.predict(ctx, model, split)
        dice, iou = segmentation_scores(pred, ctx.data[split].labels, self.num_classes, self.cfg.task.ignore_empty)
        return {**summarize_scores(dice, iou), "loss": loss}

    def after_test(self, ctx: TaskContext, model: nn.Module, run_dir: Path, seed: int) -> None:
        if seed == 0 and self.preview.get("indices"):
            pred, _ = self.predict(ctx, model, "test", self.preview["indices"])
            np.savez_compressed(RunPaths(run_dir).examples, indices=np.array(self.preview["indices"]),
                                pred=pred.cpu().numpy())

    def figures(self, ctx: TaskContext, out_dir: Path, arms: list[str]) -> list[str]:
        columns = {}
        folder = RunFolder(out_dir)
        for arm in arms:
            f = folder.run(arm, 0).examples
            if f.is_file():
                columns[arm] = np.load(f)["pred"]
        if not columns:
            return []
        images = self.preview["images"].cpu().numpy()
        write_mask_grid(folder.figure(EXAMPLES_FIGURE), images, self.preview["masks"].cpu().numpy(), columns,
                        self.preview.get("labels") or [f"test #{i}" for i in self.preview["indices"]])
        return [EXAMPLES_FIGURE]
