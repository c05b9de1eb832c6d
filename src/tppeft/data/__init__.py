"""Data: readers that give one in-memory shape (:class:`ImageDataset`) and batched tensor transforms."""

from tppeft.data.loading import detect_kind, load_dataset
from tppeft.data.medmnist import KINDS, DataError, ImageDataset, Split, load_medmnist
from tppeft.data.segmentation import load_segmentation_folder, load_segmentation_npz
from tppeft.data.transforms import (
    augment_batch,
    float_pixels,
    input_pixels,
    iterate_batches,
    resize_images,
    resize_masks,
    to_model_input,
)
from tppeft.data.volumes import load_volumes, slice_indices

__all__ = [
    "KINDS",
    "DataError",
    "ImageDataset",
    "Split",
    "augment_batch",
    "detect_kind",
    "float_pixels",
    "input_pixels",
    "iterate_batches",
    "load_dataset",
    "load_medmnist",
    "load_segmentation_folder",
    "load_segmentation_npz",
    "load_volumes",
    "resize_images",
    "resize_masks",
    "slice_indices",
    "to_model_input",
]
