"""Target-parameter methods ("tuners"): one module per family, one registry.

A method attaches new (or selects existing) parameters to a frozen backbone; those are the *target
parameters* that the TPP stage pre-trains and the fine-tuning stage trains.
"""

from tppeft.targets.base import TargetMethod, TargetParamError, get_target_method, list_target_methods
from tppeft.targets.lora import LoraMethod

__all__ = ["LoraMethod", "TargetMethod", "TargetParamError", "get_target_method", "list_target_methods"]
