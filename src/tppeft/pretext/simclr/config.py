"""Options of SimCLR (``pretext.simclr.*``); its views are ``pretext.views.*``. Torch-free."""

from __future__ import annotations

from pydantic import Field

from tppeft.options import Section


class SimclrConfig(Section):
    """Contrastive learning on two views, NT-Xent loss (``pretext.method: simclr``)."""

    temperature: float = Field(0.2, gt=0, description="Temperature of the NT-Xent loss.")
    hidden_dim: int = Field(512, gt=0, description="Hidden width of the projection head.")
    out_dim: int = Field(128, gt=0, description="Output width of the projection head.")
