"""Data: readers that give one in-memory shape (:class:`ImageDataset`) and batched tensor transforms."""

from tppeft.data.medmnist import ImageDataset, Split, load_medmnist
from tppeft.data.transforms import augment_batch, iterate_batches, resize_images, to_model_input

__all__ = [
    "ImageDataset",
    "Split",
    "augment_batch",
    "iterate_batches",
    "load_medmnist",
    "resize_images",
    "to_model_input",
]
