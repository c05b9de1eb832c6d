"""Options of masked feature distillation (``pretext.featdistill.*``); its mask is ``pretext.mask_ratio``.
Torch-free."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tppeft.options import Section


class FeatDistillConfig(Section):
    """Prediction of the frozen backbone's own features from a masked view (``pretext.method: featdistill``)."""

    tokens: Literal["masked", "all", "cls"] = Field(
        "masked", description="Tokens whose full-image features are predicted: the class token and the masked "
        "patches, the class token and every patch, or the class token only.",
    )
    loss: Literal["mse", "cosine"] = Field(
        "mse", description="`mse` on layer-normalised features, or `cosine` (1 - cosine similarity)."
    )
