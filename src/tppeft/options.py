"""The base every configuration section derives from, and the error a bad configuration raises.

Imports nothing heavy (no torch), so that every room can declare its own option models beside its code and
``tppeft.config`` can compose them without importing what they configure.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic_core import PydanticCustomError


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the key and what was expected."""


MOVED_KEY = "moved_key"  # the pydantic error type of a key that moved; its context says where each went


class Section(BaseModel):
    """A configuration section: unknown keys are errors, assignments are validated, and a key that moved to
    another section (``moved_keys``: old name -> new place) is refused with a pointer to its new place."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
    moved_keys: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _refuse_moved_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and cls.moved_keys:
            moved = [(k, cls.moved_keys[k]) for k in data if k in cls.moved_keys]
            if moved:
                raise PydanticCustomError(MOVED_KEY, "{text}", {
                    "text": "; ".join(f"{old} moved to {new}" for old, new in moved), "moved": moved})
        return data


def check_area_range(v: tuple[float, float]) -> tuple[float, float]:
    """An (min, max) area fraction of a crop: 0 < min <= max <= 1."""
    if not 0 < v[0] <= v[1] <= 1:
        raise ValueError("needs 0 < min <= max <= 1")
    return v
