"""Pretext tasks of the TPP stage: each owns a temporary head and a loss, and is discarded afterwards."""

from tppeft.pretext.base import PretextTask, get_pretext, list_pretexts
from tppeft.pretext.mae import MaskedReconstruction

__all__ = ["MaskedReconstruction", "PretextTask", "get_pretext", "list_pretexts"]
