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

from tppeft.errors import TargetParamError, did_you_mean
from tppeft.lazy import lazy_exports, load
from tppeft.options import Section
from tppeft.targets.adapter.config import AdapterOptions, AdaptFormerOptions
from tppeft.targets.ia3.config import Ia3Options
from tppeft.targets.lora.config import LoraOptions
from tppeft.targets.lycoris.config import LokrOptions
from tppeft.targets.ssf.config import SsfOptions
from tppeft.targets.vpt.config import VptOptions

if TYPE_CHECKING:
    from tppeft.targets.base import Attached, TargetMethod
    from tppeft.targets.config import PeftConfig
    from tppeft.targets.lora.model import LoraMethod


class Registered(NamedTuple):
    """A method: its implementation (``"module:Class"``, imported on first use), one line for ``tppeft list``,
    its options, if any, and whether a trained method can be folded into the backbone's own weights."""

    implementation: str
    description: str
    options: type[Section] | None = None
    mergeable: bool = False


METHODS: dict[str, Registered] = {
    "lora": Registered(
        "tppeft.targets.lora.model:LoraMethod",
        "LoRA (peft): A random, B zero, on the chosen block linears; options rsLoRA, DoRA", LoraOptions, True),
    "loha": Registered(
        "tppeft.targets.lycoris.model:LohaMethod",
        "LoHa (peft): Hadamard product of two low-rank updates on the chosen block linears", None, True),
    "lokr": Registered(
        "tppeft.targets.lycoris.model:LokrMethod",
        "LoKr (peft): Kronecker product of a small and a low-rank factor on the chosen block linears", LokrOptions,
        True),
    "ia3": Registered(
        "tppeft.targets.ia3.model:Ia3Method",
        "(IA)³ (peft): per-channel scales (start at 1) on the chosen linears' outputs / fc2's input", Ia3Options, True),
    "adapter": Registered(
        "tppeft.targets.adapter.model:AdapterMethod",
        "Adapter: sequential bottleneck after every block's MLP (up projection starts at zero)", AdapterOptions),
    "adaptformer": Registered(
        "tppeft.targets.adapter.model:AdaptFormerMethod",
        "AdaptFormer: scaled bottleneck in parallel with every block's MLP (up starts at zero)", AdaptFormerOptions),
    "vpt_shallow": Registered(
        "tppeft.targets.vpt.model:VptShallowMethod",
        "VPT-shallow: learnable prompt tokens after the class token, at the first block only", VptOptions),
    "vpt_deep": Registered(
        "tppeft.targets.vpt.model:VptDeepMethod",
        "VPT-deep: new learnable prompt tokens after the class token at every block", VptOptions),
    "ssf": Registered(
        "tppeft.targets.ssf.model:SsfMethod",
        "SSF: per-channel scale and shift after the chosen block linears and every LayerNorm", SsfOptions, True),
    "bitfit": Registered(
        "tppeft.targets.selective:BitFitMethod",
        "BitFit: trains the backbone's own biases (all of them), nothing added", None, True),
    "layernorm": Registered(
        "tppeft.targets.selective:LayerNormMethod",
        "LayerNorm tuning: trains the weight and bias of every LayerNorm, nothing added", None, True),
}


def check_method(name: str) -> None:
    """An unknown ``peft.method`` is a :class:`TargetParamError` (nothing is imported)."""
    if name not in METHODS:
        raise TargetParamError(f"peft.method '{name}' is unknown{did_you_mean(name, METHODS)}; choose from "
                               f"{sorted(METHODS)}")


def method_class(name: str) -> type[TargetMethod]:
    """The implementation of method ``name``; an unknown name is a :class:`TargetParamError`."""
    check_method(name)
    return load(METHODS[name].implementation)


def get_target_method(cfg: PeftConfig, backbone_identity: dict | None = None) -> TargetMethod:
    return method_class(cfg.method)(cfg, backbone_identity)


def list_target_methods() -> dict[str, str]:
    """Each method's one-line description, by name (no implementation is imported)."""
    return {k: v.description + ("" if v.mergeable else " [not mergeable]") for k, v in sorted(METHODS.items())}


__getattr__, __dir__ = lazy_exports(__name__, {
    "tppeft.targets.base": ["Attached", "TargetMethod"],
    "tppeft.targets.lora.model": ["LoraMethod"],
})

__all__ = ["METHODS", "Attached", "LoraMethod", "Registered", "TargetMethod", "TargetParamError",
           "check_method", "get_target_method", "list_target_methods", "method_class"]
