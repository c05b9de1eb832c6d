"""Options of the batched multi-view transform (``pretext.views.*``) that ``dino`` and ``simclr`` share.
Torch-free."""

from __future__ import annotations

from pydantic import Field, field_validator

from tppeft.options import Section, check_area_range


class ViewsConfig(Section):
    """Batched multi-view transform of the view-based pretext tasks (``dino``, ``simclr``)."""

    global_scale: tuple[float, float] = Field(
        (0.4, 1.0),
        description="`dino`, `simclr`: area range of the global crops (full input size), as fractions of the image.",
    )
    local_scale: tuple[float, float] = Field(
        (0.1, 0.4), description="Area range of the local crops (`dino` only), as fractions of the image."
    )
    local_crops: int = Field(4, ge=0, description="Local crops per image (`dino` only; 0 = global crops only).")
    local_size: int = Field(
        32, gt=0, description="Side in pixels of a local crop; a multiple of the patch size (`dino` only)."
    )
    hflip: bool = Field(True, description="`dino`, `simclr`: random horizontal flip of every view.")
    vflip: bool = Field(False, description="`dino`, `simclr`: random vertical flip of every view.")
    brightness: float = Field(
        0.2, ge=0, description="`dino`, `simclr`: brightness jitter, add U(-b, b) to pixels in [0, 1]."
    )
    contrast: float = Field(
        0.2, ge=0, lt=1, description="`dino`, `simclr`: contrast jitter, scale around the image mean by U(1-c, 1+c)."
    )
    gamma: float = Field(0.2, ge=0, description="`dino`, `simclr`: gamma jitter, pixels to the power exp(U(-g, g)).")

    @field_validator("global_scale", "local_scale")
    @classmethod
    def _check_scale(cls, v: tuple[float, float]) -> tuple[float, float]:
        return check_area_range(v)
