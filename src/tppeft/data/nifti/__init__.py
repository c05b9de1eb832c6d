"""NIfTI volumes (an MSD folder or a CSV of image/label paths) read through MONAI / nibabel.

``config.py`` (torch-free) holds the ``data.volume`` options; ``sources.py`` finds the cases and their split,
``read.py`` reads and checks one volume, ``dataset.py`` stacks them into splits. Names load on first use.
"""

from typing import TYPE_CHECKING

from tppeft.data.nifti.config import VolumeDataConfig
from tppeft.lazy import lazy_exports

if TYPE_CHECKING:
    from tppeft.data.nifti.dataset import KIND, VolumeDataset, VolumeSplit, load_nifti_dataset
    from tppeft.data.nifti.sources import holds_volumes

__getattr__, __dir__ = lazy_exports(__name__, {
    "tppeft.data.nifti.dataset": ["KIND", "VolumeDataset", "VolumeSplit", "load_nifti_dataset"],
    "tppeft.data.nifti.sources": ["holds_volumes"],
})

__all__ = ["KIND", "VolumeDataConfig", "VolumeDataset", "VolumeSplit", "holds_volumes", "load_nifti_dataset"]
