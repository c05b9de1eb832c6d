"""Options of 3D segmentation; they sit flat in the ``task`` section (``task.neighbour_slices``). The decoder,
loss and empty-class options are segmentation's (``task.decoder_channels``, ...). Torch-free."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tppeft.options import Section


class Segmentation3DOptions(Section):
    """What a 2D backbone sees of a volume."""

    neighbour_slices: Literal[0, 1] = Field(
        0, description="3D segmentation with a 2D backbone: neighbouring slices on each side given as input "
        "channels (1: the slices before and after as the other two of the backbone's three channels; 0: the "
        "slice alone, replicated).")
