"""Target-parameter methods ("tuners"): one folder per family with options, one registry.

A method attaches new (or selects existing) parameters to a frozen backbone; those are the *target
parameters* that the TPP stage pre-trains and the fine-tuning stage trains. From ``peft``: LoRA (rsLoRA,
DoRA), LoHa, LoKr, (IA)³. Written here: Adapter, AdaptFormer, VPT (shallow, deep), SSF, BitFit, LayerNorm.

As in peft, a family's options (``<family>/config.py``, torch-free) sit beside its implementation
(``<family>/model.py``); ``config.py`` composes them into the ``peft`` section. The registry below names each
method's implementation and options; an implementation is imported when it is first used, so that reading a
configuration needs no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from tppeft.lazy import lazy_exports, load
from tppeft.options import Section
from tppeft.targets.adapter.config import AdapterOptions, AdaptFormerOptions
from tppeft.targets.ia3.config import Ia3Options
from tppeft.targets.lora.config import LoraOptions
from tppeft.targets.lycoris.config import LokrOptions
from tppeft.targets.ssf.config import SsfOptions
from tppeft.targets.vpt.config import VptOptions

if TYPE_CHECKING:
    from tppeft.targets.base import Attached, TargetMethod, TargetParamError
    from tppeft.targets.config import PeftConfig
    from tppeft.targets.lora.model import LoraMethod


class Registered(NamedTuple):
    """A method: its implementation (``"module:Class"``, imported on first use) and its options, if any."""

    implementation: str
    options: type[Section] | None = None


METHODS: dict[str, Registered] = {
    "lora": Registered("tppeft.targets.lora.model:LoraMethod", LoraOptions),
    "loha": Registered("tppeft.targets.lycoris.model:LohaMethod"),
    "lokr": Registered("tppeft.targets.lycoris.model:LokrMethod", LokrOptions),
    "ia3": Registered("tppeft.targets.ia3.model:Ia3Method", Ia3Options),
    "adapter": Registered("tppeft.targets.adapter.model:AdapterMethod", AdapterOptions),
    "adaptformer": Registered("tppeft.targets.adapter.model:AdaptFormerMethod", AdaptFormerOptions),
    "vpt_shallow": Registered("tppeft.targets.vpt.model:VptShallowMethod", VptOptions),
    "vpt_deep": Registered("tppeft.targets.vpt.model:VptDeepMethod", VptOptions),
    "ssf": Registered("tppeft.targets.ssf.model:SsfMethod", SsfOptions),
    "bitfit": Registered("tppeft.targets.selective:BitFitMethod"),
    "layernorm": Registered("tppeft.targets.selective:LayerNormMethod"),
}


def method_class(name: str) -> type[TargetMethod]:
    """The implementation of method ``name``; an unknown name is a :class:`TargetParamError`."""
    if name not in METHODS:
        from tppeft.targets.base import TargetParamError

        raise TargetParamError(f"peft.method '{name}' is unknown; choose from {sorted(METHODS)}")
    return load(METHODS[name].implementation)


def get_target_method(cfg: PeftConfig, backbone_identity: dict | None = None) -> TargetMethod:
    return method_class(cfg.method)(cfg, backbone_identity)


def list_target_methods() -> dict[str, str]:
    methods = {name: method_class(name) for name in sorted(METHODS)}
    return {k: v.description + ("" if v.mergeable else " [not mergeable]") for k, v in methods.items()}


__getattr__, __dir__ = lazy_exports(__name__, {
    "tppeft.targets.base": ["Attached", "TargetMethod", "TargetParamError"],
    "tppeft.targets.lora.model": ["LoraMethod"],
})

__all__ = ["METHODS", "Attached", "LoraMethod", "Registered", "TargetMethod", "TargetParamError",
           "get_target_method", "list_target_methods", "method_class"]
