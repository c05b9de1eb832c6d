"""tppeft: Target-Parameter Pre-training (TPP) before parameter-efficient fine-tuning.

The Python API (see :mod:`tppeft.api`): ``run`` (a comparison, as ``tppeft run``), ``pretrain`` (the TPP stage
on your own model and images), ``finetune``, ``evaluate``, ``load_data`` and ``load_backbone``. Importing
``tppeft`` loads no torch: each name imports its module when it is first used.
"""

from typing import TYPE_CHECKING

from tppeft.lazy import lazy_exports

__version__ = "0.1.0"

if TYPE_CHECKING:
    from tppeft.api import evaluate, finetune, load_backbone, load_data, pretrain, run

__getattr__, __dir__ = lazy_exports(__name__, {
    "tppeft.api": ["evaluate", "finetune", "load_backbone", "load_data", "pretrain", "run"],
})

__all__ = ["__version__", "evaluate", "finetune", "load_backbone", "load_data", "pretrain", "run"]
