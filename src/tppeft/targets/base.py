"""The contract every target-parameter method follows and its file format (the registry is the package's
``__init__``).

A method puts its parameters in place on a frozen timm ViT (``attach``) and names them: new tensors
(LoRA, adapters, prompts, ...) or existing ones it selects (BitFit's biases, LayerNorm affines). Those
*target parameters* alone are saved, loaded and, where the method allows, merged back into the weights.

File format of ``save`` (every method): ``target_params.safetensors`` (tensors by their name relative to
the ViT) and ``target_params.json`` (method, hyper-parameters, the whole ``peft`` config section, backbone
identity, tensor shapes and the SHA-256 of the safetensors file). peft-backed methods also write peft's
own ``adapter_config.json`` + ``adapter_model.safetensors``.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors.torch import load_file
from torch import nn

import tppeft
from tppeft.errors import TargetParamError
from tppeft.io import file_sha256, save_tensors
from tppeft.revision import source_revision
from tppeft.targets.card import write_model_card
from tppeft.targets.config import PeftConfig

TENSORS_FILE = "target_params.safetensors"
META_FILE = "target_params.json"
FORMAT = "tppeft.target_params"
FORMAT_VERSION = 1
# Backbone identity keys that must agree for saved target parameters to mean anything on a backbone.
_IDENTITY_KEYS = ("name", "sha256")


@dataclass
class Attached:
    """A ViT with a method in place. ``vit`` runs the adapted model; target names are relative to it."""

    vit: nn.Module
    names: list[str]
    peft_model: nn.Module | None = None  # the peft wrapper, for peft-backed methods


def read_meta(directory: Path) -> dict:
    """The JSON side of saved target parameters; a clear error when it is missing or not ours."""
    path = Path(directory) / META_FILE
    if not path.is_file():
        raise TargetParamError(f"{directory}: expected {META_FILE} and {TENSORS_FILE} (saved target parameters)")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise TargetParamError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise TargetParamError(f"{path}: not a tppeft target-parameter file (format '{FORMAT}')")
    return meta


def _dotted(cfg: PeftConfig, key: str) -> Any:
    value: Any = cfg
    for part in key.split("."):
        value = getattr(value, part)
    return value.model_dump() if hasattr(value, "model_dump") else value


class TargetMethod:
    """One PEFT family. Subclasses set the class attributes and implement ``inject`` (and ``merge_into``)."""

    name: ClassVar[str]
    # Keys of the `peft` config section that fix the target parameters' shapes and meaning.
    hyper_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(self, cfg: PeftConfig, backbone_identity: dict | None = None):
        self.cfg = cfg
        self.backbone_identity = backbone_identity

    @property
    def mergeable(self) -> bool:
        """Whether the trained method can be folded into the backbone's own weights (its registry entry)."""
        from tppeft.targets import METHODS

        return METHODS[self.name].mergeable

    # --- what a subclass provides -------------------------------------------------------------------
    def inject(self, vit: nn.Module) -> Attached:
        """Put the method in place on ``vit`` (in place) and name the target parameters."""
        raise NotImplementedError

    def merge_into(self, handle: Attached) -> nn.Module:
        """Fold the method into ``handle.vit`` (in place) and return the plain timm ViT."""
        raise TargetParamError(f"peft.method '{self.name}' cannot be merged into the backbone's weights (it adds "
                               "modules or tokens to the forward pass); export its adapter files instead")

    def save_extra(self, handle: Attached, directory: Path) -> None:
        """Files beside the common format (peft's adapter format for peft-backed methods)."""

    # --- the contract -------------------------------------------------------------------------------
    def attach(self, backbone: nn.Module) -> tuple[Attached, list[str]]:
        """Put the method in place on ``backbone`` (in place); return a handle to save with and the names
        (relative to ``backbone``) of the target parameters. Everything else is frozen."""
        backbone.requires_grad_(False)
        handle = self.inject(backbone)
        if not handle.names:
            raise TargetParamError(f"peft.method '{self.name}' found nothing to attach to on this backbone "
                                   f"(peft.targets={self.cfg.targets})")
        wanted = set(handle.names)
        for n, p in backbone.named_parameters():
            p.requires_grad_(n in wanted)
        return handle, handle.names

    def hyper_parameters(self) -> dict:
        return {k: _dotted(self.cfg, k) for k in self.hyper_keys}

    def save(self, handle: Attached, directory: Path, facts: dict[str, str] | None = None) -> None:
        """Write the target parameters alone (see the module docstring for the format) and a model card
        (``README.md``) with ``facts`` the caller knows (pretext task, data, losses)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {n: t.detach().cpu().contiguous() for n, t in self.target_state(handle.vit, handle.names).items()}
        save_tensors(state, directory / TENSORS_FILE)
        meta = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "tppeft_version": tppeft.__version__,
            "revision": source_revision(),
            "method": self.name, "hyper_parameters": self.hyper_parameters(), "peft_config": self.cfg.model_dump(),
            "backbone": self.backbone_identity, "num_params": sum(t.numel() for t in state.values()),
            "tensors": {n: list(t.shape) for n, t in state.items()},
            "sha256": file_sha256(directory / TENSORS_FILE),
        }
        (directory / META_FILE).write_text(json.dumps(meta, indent=1) + "\n")
        self.save_extra(handle, directory)
        write_model_card(directory, meta, facts)

    def check_meta(self, meta: dict, directory: Path) -> None:
        """Saved method, hyper-parameters and backbone must be this run's; else one clear error."""
        if meta.get("method") != self.name:
            raise TargetParamError(f"{directory}: holds '{meta.get('method')}' target parameters, but "
                                   f"peft.method is '{self.name}'")
        saved_hp = meta.get("hyper_parameters", {})
        for key, want in self.hyper_parameters().items():
            if saved_hp.get(key) != want:
                raise TargetParamError(f"{directory}: saved peft.{key}={saved_hp.get(key)!r} but this run uses "
                                       f"peft.{key}={want!r}")
        saved_bb, own_bb = meta.get("backbone") or {}, self.backbone_identity or {}
        for key in _IDENTITY_KEYS:
            if key in saved_bb and key in own_bb and saved_bb[key] != own_bb[key]:
                raise TargetParamError(f"{directory}: target parameters of backbone {saved_bb.get('name')} "
                                       f"(checkpoint sha256 {str(saved_bb.get('sha256'))[:12]}) do not fit this "
                                       f"run's backbone {own_bb.get('name')} (sha256 {str(own_bb.get('sha256'))[:12]})")

    def load(self, handle: Attached, directory: Path) -> None:
        """Load saved target parameters into an attached model; any mismatch is a :class:`TargetParamError`."""
        directory = Path(directory)
        meta = read_meta(directory)
        self.check_meta(meta, directory)
        tensors = directory / TENSORS_FILE
        if not tensors.is_file():
            raise TargetParamError(f"{directory}: {TENSORS_FILE} is missing")
        if file_sha256(tensors) != meta.get("sha256"):
            raise TargetParamError(f"{tensors}: checksum does not match {META_FILE} (file changed or corrupted)")
        self.load_state(handle, load_file(tensors), directory)

    def load_state(self, handle: Attached, state: dict[str, torch.Tensor], source: Path) -> None:
        """Copy ``state`` into the target parameters: all of them or none."""
        params = dict(handle.vit.named_parameters())
        own = set(handle.names)
        missing, unexpected = sorted(own - set(state)), sorted(set(state) - own)
        if missing or unexpected:
            raise TargetParamError(f"{source}: does not fit this backbone (missing {missing[:3]}, unexpected "
                                   f"{unexpected[:3]}; {len(state)} saved vs {len(own)} expected tensors)")
        for n in handle.names:
            if tuple(state[n].shape) != tuple(params[n].shape):
                raise TargetParamError(f"{source}: does not fit this backbone ({n} saved with shape "
                                       f"{tuple(state[n].shape)}, this backbone needs {tuple(params[n].shape)})")
        with torch.no_grad():
            for n in handle.names:
                params[n].copy_(state[n].to(params[n].dtype))

    def merge(self, handle: Attached) -> nn.Module:
        """A plain timm ViT (a copy) whose weights include the trained method; the handle is left as it is."""
        if not self.mergeable:
            self.merge_into(handle)  # raises the method's own error
        return self.merge_into(copy.deepcopy(handle))

    @staticmethod
    def target_state(backbone: nn.Module, names: list[str]) -> dict[str, torch.Tensor]:
        params = dict(backbone.named_parameters())
        return {n: params[n].detach().clone() for n in names}

