"""Pretext losses, one per file, each documented with the paper it follows."""

from tppeft.pretext.losses.dino_loss import DINOLoss
from tppeft.pretext.losses.feature_loss import feature_distillation_loss
from tppeft.pretext.losses.ntx_ent_loss import NTXentLoss
from tppeft.pretext.losses.reconstruction import masked_patch_loss

__all__ = ["DINOLoss", "NTXentLoss", "feature_distillation_loss", "masked_patch_loss"]
