"""Per-volume 3D Dice and IoU (MONAI), each volume cropped to its own voxels first."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tppeft.data.nifti import VolumeSplit


def volume_scores(pred: torch.Tensor, volumes: VolumeSplit, num_classes: int,
                  ignore_empty: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Dice and IoU of every foreground class in every volume, each (N, num_classes - 1), by MONAI's
    ``compute_dice`` / ``compute_iou`` on the volume's own voxels (padding cropped away). ``pred`` holds class
    ids laid out as ``volumes.labels`` (N, D, S, S). Empty ground truth: as in 2D segmentation (NaN, or 1/0)."""
    from monai.metrics import compute_dice, compute_iou  # imported here: monai is slow to import

    dice, iou = [], []
    for i in range(len(volumes)):
        p = F.one_hot(volumes.crop(i, pred[i]).long(), num_classes).permute(3, 0, 1, 2)[None].float()
        t = F.one_hot(volumes.crop(i, volumes.labels[i]).long(), num_classes).permute(3, 0, 1, 2)[None].float()
        dice.append(compute_dice(p, t, include_background=False, ignore_empty=ignore_empty, num_classes=num_classes))
        iou.append(compute_iou(p, t, include_background=False, ignore_empty=ignore_empty))
    return torch.cat(dice), torch.cat(iou)
