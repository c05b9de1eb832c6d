"""Bottleneck adapters: Adapter (sequential) and AdaptFormer (parallel).

Options in ``config.py`` (torch-free), the methods in ``model.py``, imported on first use.
"""

from typing import TYPE_CHECKING

from tppeft.lazy import lazy_exports
from tppeft.targets.adapter.config import AdapterOptions, AdaptFormerOptions

if TYPE_CHECKING:
    from tppeft.targets.adapter.model import (
        AdapterMethod,
        AdaptFormerMethod,
        Bottleneck,
        ParallelAdapterLayer,
        SequentialAdapterLayer,
    )

__getattr__, __dir__ = lazy_exports(__name__, {
    "tppeft.targets.adapter.model": ["AdapterMethod", "AdaptFormerMethod", "Bottleneck", "ParallelAdapterLayer",
                                     "SequentialAdapterLayer"],
})

__all__ = ["AdaptFormerMethod", "AdaptFormerOptions", "AdapterMethod", "AdapterOptions", "Bottleneck",
           "ParallelAdapterLayer", "SequentialAdapterLayer"]
