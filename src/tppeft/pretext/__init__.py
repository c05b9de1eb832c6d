"""Pretext tasks of the TPP stage: each owns a temporary head and a loss, and is discarded afterwards.

Laid out as lightly is (losses/ one per file with its paper, heads.py, views.py, masking.py), but without
depending on it: lightly 1.6 requires torchvision (pinned to one torch build, so pip may pull another torch),
pytorch_lightning and hydra-core for the few hundred lines of losses and heads used here.
"""

from tppeft.pretext.base import PretextTask, get_pretext, list_pretexts
from tppeft.pretext.dino import SelfDistillation
from tppeft.pretext.featdistill import MaskedFeatureDistillation
from tppeft.pretext.mae import MaskedReconstruction
from tppeft.pretext.simclr import Contrastive
from tppeft.pretext.simmim import SimMIM

__all__ = ["Contrastive", "MaskedFeatureDistillation", "MaskedReconstruction", "PretextTask", "SelfDistillation",
           "SimMIM", "get_pretext", "list_pretexts"]
