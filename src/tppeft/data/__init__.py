"""Data: readers of every accepted layout that give one shape (:class:`ImageDataset`) and batched tensor transforms.

Torch-free to import (``tppeft.config`` reads ``data/config.py``): the names below load on first use.
"""

from typing import TYPE_CHECKING

from tppeft.lazy import lazy_exports

if TYPE_CHECKING:
    from tppeft.data.detect import Layout, detect_layout
    from tppeft.data.loading import data_from_config, detect_kind, load_dataset
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

__getattr__, __dir__ = lazy_exports(__name__, {
    "tppeft.data.detect": ["Layout", "detect_layout"],
    "tppeft.data.loading": ["data_from_config", "detect_kind", "load_dataset"],
    "tppeft.data.medmnist": ["KINDS", "DataError", "ImageDataset", "Split", "load_medmnist"],
    "tppeft.data.segmentation": ["load_segmentation_folder", "load_segmentation_npz"],
    "tppeft.data.transforms": ["augment_batch", "float_pixels", "input_pixels", "iterate_batches", "resize_images",
                               "resize_masks", "to_model_input"],
    "tppeft.data.volumes": ["load_volumes", "slice_indices"],
})

__all__ = [
    "KINDS",
    "DataError",
    "ImageDataset",
    "Layout",
    "Split",
    "augment_batch",
    "data_from_config",
    "detect_kind",
    "detect_layout",
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
