"""Backbone pre-training (``tppeft backbone-pretrain``): a whole ViT from random weights by MAE on an unlabelled
image pool, written in b0's layout.

Options in ``config.py`` (torch-free), the training in ``train.py``, imported on first use.
"""

from typing import TYPE_CHECKING

from tppeft.backbone_pretrain.config import BackbonePretrainConfig
from tppeft.lazy import lazy_exports

if TYPE_CHECKING:
    from tppeft.backbone_pretrain.train import pretrain_backbone

__getattr__, __dir__ = lazy_exports(__name__, {"tppeft.backbone_pretrain.train": ["pretrain_backbone"]})

__all__ = ["BackbonePretrainConfig", "pretrain_backbone"]
