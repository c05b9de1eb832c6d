"""Checkpoint layouts, one module each, all read into :class:`BackboneWeights` (``base.py``): the tool's own
(``native.py``), Hugging Face transformers folders (``hf.py``), MAE-layout pickles (``mae_pth.py``), DINO
training checkpoints (``dino.py``), hub names (``hub.py``); ``detect.py`` picks the reader."""

from tppeft.backbones.formats.base import BackboneWeights, DecoderWeights, DinoHeadWeights
from tppeft.backbones.formats.detect import read

__all__ = ["BackboneWeights", "DecoderWeights", "DinoHeadWeights", "read"]
