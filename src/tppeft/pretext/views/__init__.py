"""The batched multi-view transform of ``dino`` and ``simclr``.

Options in ``config.py`` (torch-free), the transform in ``transform.py``, imported on first use.
"""

from typing import TYPE_CHECKING

from tppeft.lazy import lazy_exports
from tppeft.pretext.views.config import ViewsConfig

if TYPE_CHECKING:
    from tppeft.pretext.views.transform import MultiCropViews, intensity_jitter

__getattr__, __dir__ = lazy_exports(__name__, {
    "tppeft.pretext.views.transform": ["MultiCropViews", "intensity_jitter"],
})

__all__ = ["MultiCropViews", "ViewsConfig", "intensity_jitter"]
