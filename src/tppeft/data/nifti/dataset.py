"""NIfTI volumes as a dataset of three splits: every volume padded into one (N, D, S, S) tensor (depth first,
in-plane square), with each volume's extent, so that predictions are cropped back before they are scored."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from tppeft.data.medmnist import DataError, ImageDataset, Split, subset
from tppeft.data.nifti.config import VolumeDataConfig
from tppeft.data.nifti.read import Volume, read_volume
from tppeft.data.nifti.sources import assign_splits, find_source

KIND = "segmentation3d"


@dataclass
class VolumeSplit(Split):
    """Volumes of one split: ``images`` (N, D, S, S) float in [0, 1] and ``labels`` (N, D, S, S) class ids,
    each volume centred in the common shape with zero padding; ``extent`` (N, 3) is every volume's own
    (D, H, W) and ``offset`` (N, 3) where it starts. ``spacing`` (N, 3) in mm, same axis order."""

    extent: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 3, dtype=torch.long))
    offset: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 3, dtype=torch.long))
    spacing: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 3))
    names: list[str] = field(default_factory=list)

    def crop(self, i: int, volume: torch.Tensor) -> torch.Tensor:
        """Volume ``i``'s own voxels of a (..., D, S, S) array laid out as the split's."""
        (d, h, w), (a, b, c) = self.extent[i].tolist(), self.offset[i].tolist()
        return volume[..., a:a + d, b:b + h, c:c + w]

    def to(self, device: torch.device | str) -> VolumeSplit:
        moved = None if self.input_labels is None else self.input_labels.to(device)
        return VolumeSplit(self.images.to(device), self.labels.to(device), moved, self.size, self.extent,
                           self.offset, self.spacing, self.names)


@dataclass
class VolumeDataset(ImageDataset):
    """NIfTI volumes with their label names (class id order, background first) and how they were split."""

    label_names: list[str] = field(default_factory=list)
    split_origin: str = ""

    def to(self, device: torch.device | str) -> VolumeDataset:
        return VolumeDataset(self.name, {k: v.to(device) for k, v in self.splits.items()}, self.task,
                             self.num_classes, self.kind, self.class_names, self.layout,
                             label_names=self.label_names, split_origin=self.split_origin)


def _stack(volumes: list[Volume], shape: tuple[int, int, int]) -> VolumeSplit:
    """Pad every volume into ``shape``, centred (start ``(target - size) // 2`` per axis)."""
    images = torch.zeros(len(volumes), *shape)
    labels = torch.zeros(len(volumes), *shape, dtype=torch.uint8)
    extent = torch.tensor([v.image.shape for v in volumes], dtype=torch.long)
    offset = (torch.tensor(shape) - extent) // 2
    for i, v in enumerate(volumes):  # numpy slicing: the offsets are kept to crop predictions back
        (a, b, c), (d, h, w) = offset[i].tolist(), v.image.shape
        images[i, a:a + d, b:b + h, c:c + w] = torch.from_numpy(v.image)
        labels[i, a:a + d, b:b + h, c:c + w] = torch.from_numpy(v.label)
    return VolumeSplit(images, labels, extent=extent, offset=offset,
                       spacing=torch.tensor([v.spacing for v in volumes]), names=[v.name for v in volumes])


def load_nifti_dataset(path: str | Path, cfg: VolumeDataConfig | None = None,
                       limit: int | None = None) -> VolumeDataset:
    """Read an MSD folder or a CSV of image/label NIfTI paths into train/val/test :class:`VolumeSplit`\\ s.

    ``limit`` keeps that many volumes per split, evenly spaced through the split's cases sorted by name.
    """
    cfg = cfg or VolumeDataConfig()
    path = Path(path)
    source = find_source(path)
    by_split, origin = assign_splits(source, cfg)
    allowed = set(source.label_names) if source.label_names is not None else None
    chosen = {s: [cases[i] for i in subset(len(cases), limit)] for s, cases in by_split.items()}
    read = {s: [read_volume(case, cfg, allowed) for case in cases] for s, cases in chosen.items()}
    volumes = [v for vs in read.values() for v in vs]
    if cfg.orientation is None:
        first = volumes[0]
        for v, case in zip(volumes, [c for cs in chosen.values() for c in cs], strict=True):
            if v.orientation != first.orientation:
                raise DataError(f"{case.image}: orientation {v.orientation} differs from {first.orientation} of "
                                f"'{first.name}'; set data.volume.orientation (e.g. RAS) to reorient every volume")
    depth = max(v.image.shape[0] for v in volumes)
    side = max(max(v.image.shape[1:]) for v in volumes)
    splits = {s: _stack(vs, (depth, side, side)) for s, vs in read.items()}
    top = max(int(v.label.max()) for v in volumes)
    if source.label_names is not None:
        num_classes = max(source.label_names) + 1
        names = [source.label_names.get(k, str(k)) for k in range(num_classes)]
    else:
        num_classes = top + 1
        names = ["background", *(str(k) for k in range(1, num_classes))]
    if num_classes < 2:
        raise DataError(f"{path}: every label volume is background only; segmentation needs a foreground class")
    return VolumeDataset(source.name, splits, "multiclass", num_classes, KIND, class_names=names,
                         label_names=names, split_origin=origin)
