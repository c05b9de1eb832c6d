"""The base every configuration section derives from, and the error a bad configuration raises.

Imports nothing heavy (no torch), so that every room can declare its own option models beside its code and
``tppeft.config`` can compose them without importing what they configure.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the key and what was expected."""


class Section(BaseModel):
    """A configuration section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def check_area_range(v: tuple[float, float]) -> tuple[float, float]:
    """An (min, max) area fraction of a crop: 0 < min <= max <= 1."""
    if not 0 < v[0] <= v[1] <= 1:
        raise ValueError("needs 0 < min <= max <= 1")
    return v
