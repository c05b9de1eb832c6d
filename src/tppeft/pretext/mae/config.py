"""Options of MAE's decoder; they sit flat in the ``pretext`` section (``pretext.decoder``, ``decoder_dim``, ...),
and ``tppeft backbone-pretrain`` reads the shape of the decoder it trains from them. Torch-free."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from tppeft.options import Section


class MaeOptions(Section):
    """MAE's decoder: the checkpoint's or a fresh one, whether it trains, and a fresh one's shape."""

    decoder: Literal["auto", "pretrained", "fresh"] = Field(
        "auto",
        description="`mae`: `pretrained` = the checkpoint's MAE decoder (at another input size than the "
        "checkpoint's, its position table resampled as the encoder's is), `fresh` = a new small decoder, "
        "`auto` = pretrained when the checkpoint has one and the input size is the checkpoint's, else fresh.",
    )
    train_decoder: bool | None = Field(
        None, description="`mae`: train the decoder with the target parameters; null = only a fresh decoder."
    )
    decoder_lr_scale: float = Field(
        0.1, gt=0, description="`mae`: learning-rate factor of a trained *pretrained* decoder (a fresh one uses 1)."
    )
    decoder_dim: int = Field(
        128, gt=0, description="`mae`: width of a fresh decoder (also of the one `tppeft backbone-pretrain` trains)."
    )
    decoder_depth: int = Field(
        2, gt=0, description="`mae`: transformer blocks of a fresh decoder (also of the one `tppeft backbone-pretrain` "
        "trains)."
    )
    decoder_heads: int = Field(
        4, gt=0, description="`mae`: attention heads of a fresh decoder, a divisor of its width (also of the one "
        "`tppeft backbone-pretrain` trains)."
    )

    @model_validator(mode="after")
    def _check_decoder_heads(self) -> MaeOptions:
        if self.decoder_dim % self.decoder_heads:
            raise ValueError(f"decoder_dim {self.decoder_dim} is not divisible by decoder_heads {self.decoder_heads}")
        return self
