"""Tasks of the 3D ViT (``backbone.dims: 3``): 3D segmentation with a 3D UNETR-style decoder (``segmentation.py``,
``decoder.py``) and volume classification (``classification.py``). Imported on first use."""

from typing import TYPE_CHECKING

from tppeft.lazy import lazy_exports

if TYPE_CHECKING:
    from tppeft.tasks.vit3d.classification import Volume3DClassificationTask
    from tppeft.tasks.vit3d.decoder import UNETR3DHead, ViTSegmenter3D
    from tppeft.tasks.vit3d.segmentation import Volume3DSegmentationTask

__getattr__, __dir__ = lazy_exports(__name__, {
    "tppeft.tasks.vit3d.classification": ["Volume3DClassificationTask"],
    "tppeft.tasks.vit3d.decoder": ["UNETR3DHead", "ViTSegmenter3D"],
    "tppeft.tasks.vit3d.segmentation": ["Volume3DSegmentationTask"],
})

__all__ = ["UNETR3DHead", "ViTSegmenter3D", "Volume3DClassificationTask", "Volume3DSegmentationTask"]
