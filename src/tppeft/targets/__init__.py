"""Target-parameter methods ("tuners"): one module per family, one registry.

A method attaches new (or selects existing) parameters to a frozen backbone; those are the *target
parameters* that the TPP stage pre-trains and the fine-tuning stage trains. From ``peft``: LoRA (rsLoRA,
DoRA), LoHa, LoKr, (IA)³. Written here: Adapter, AdaptFormer, VPT (shallow, deep), SSF, BitFit, LayerNorm.
"""

from tppeft.targets import adapter, ia3, lora, lycoris, selective, ssf, vpt  # noqa: F401  (registration)
from tppeft.targets.base import (
    Attached,
    TargetMethod,
    TargetParamError,
    get_target_method,
    list_target_methods,
    method_class,
)
from tppeft.targets.lora import LoraMethod

__all__ = ["Attached", "LoraMethod", "TargetMethod", "TargetParamError", "get_target_method",
           "list_target_methods", "method_class"]
