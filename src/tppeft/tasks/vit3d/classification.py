"""Volume classification with the 3D ViT: whole volumes resized to the backbone's input, a linear head on the
class token (as 2D classification), MedMNIST's ACC and AUC."""

from __future__ import annotations

from tppeft.data import ImageDataset
from tppeft.data.volume_transforms import resize_volumes
from tppeft.tasks.classification import ClassificationTask


class Volume3DClassificationTask(ClassificationTask):
    name = kind = "volume"
    primary_metric = "auc"

    def __init__(self, cfg, data: ImageDataset):
        super().__init__(cfg, data)
        self.size = cfg.data.image_size or 0  # the in-plane input size, set by prepare

    def metric_note(self) -> str:
        d, s = self.cfg.backbone.volume_depth, self.size
        return (f"Per-volume ACC and AUC as MedMNIST v2 computes them; each whole volume, resized to {d}x{s}x{s}, "
                "is encoded by the 3D ViT and classified from its class token.")

    def prepare(self, data: ImageDataset, image_size: int) -> None:
        """Volumes (N, S, 1, H, W) as grey (N, D, S, S) at the 3D backbone's input size, resized once."""
        self.size = image_size
        shape = (self.cfg.backbone.volume_depth, image_size, image_size)
        for split in data.splits.values():
            split.images = resize_volumes(split.images[:, :, 0], shape)
            split.size = None
