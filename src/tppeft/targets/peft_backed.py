"""Methods that come from Hugging Face ``peft``: peft owns their layers, injection and merging.

tppeft adds the common file format (``target_params.*``) and keeps peft's own adapter files beside it,
so a saved folder also loads with ``peft.PeftModel.from_pretrained`` into the plain timm model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

from peft import PeftConfig as PeftLibConfig
from peft import get_peft_model, set_peft_model_state_dict
from safetensors.torch import load_file
from torch import nn

from tppeft.io import umask_permissions
from tppeft.targets.base import META_FILE, Attached, TargetMethod, TargetParamError

PEFT_CONFIG_FILE = "adapter_config.json"
PEFT_WEIGHTS_FILE = "adapter_model.safetensors"


class PeftBackedMethod(TargetMethod):
    """Base of the peft families; a subclass says which ``peft`` config to build."""

    peft_type: ClassVar[str]  # peft's name, as written in adapter_config.json ("LORA", "LOHA", ...)
    # peft config fields that must agree when loading a folder that has only peft's files.
    peft_keys: ClassVar[tuple[str, ...]] = ()

    def peft_config(self) -> PeftLibConfig:
        raise NotImplementedError

    def inject(self, vit: nn.Module) -> Attached:
        model = get_peft_model(vit, self.peft_config())
        names = [n for n, p in vit.named_parameters() if p.requires_grad]
        return Attached(vit, names, model)

    def save_extra(self, handle: Attached, directory: Path) -> None:
        handle.peft_model.save_pretrained(str(directory))
        for path in Path(directory).glob("*.safetensors"):  # peft writes through safetensors' save_file
            umask_permissions(path)

    def merge_into(self, handle: Attached) -> nn.Module:
        return handle.peft_model.merge_and_unload()

    def load(self, handle: Attached, directory: Path) -> None:
        directory = Path(directory)
        if not (directory / META_FILE).is_file() and (directory / PEFT_CONFIG_FILE).is_file():
            self.load_peft_files(handle, directory)  # a folder written by peft alone
        else:
            super().load(handle, directory)

    def load_peft_files(self, handle: Attached, directory: Path) -> None:
        """Load peft's adapter files (``save_pretrained`` output) with the same all-or-nothing checks."""
        weights = directory / PEFT_WEIGHTS_FILE
        if not weights.is_file():
            raise TargetParamError(f"{directory}: {PEFT_CONFIG_FILE} without {PEFT_WEIGHTS_FILE}")
        saved = json.loads((directory / PEFT_CONFIG_FILE).read_text())
        if saved.get("peft_type") != self.peft_type:
            raise TargetParamError(f"{directory}: holds peft '{saved.get('peft_type')}' parameters, but "
                                   f"peft.method is '{self.name}' ({self.peft_type})")
        want = self.peft_config()
        for key in ("target_modules", *self.peft_keys):
            if saved.get(key) != getattr(want, key):
                raise TargetParamError(f"{directory}: saved {key}={saved.get(key)!r} but this run uses "
                                       f"{getattr(want, key)!r}")
        state = load_file(weights)
        if len(state) != len(handle.names):
            raise TargetParamError(f"{directory}: does not fit this backbone ({len(state)} saved vs "
                                   f"{len(handle.names)} expected tensors)")
        try:
            result = set_peft_model_state_dict(handle.peft_model, state)
        except RuntimeError as e:  # shape mismatch: another backbone
            raise TargetParamError(f"{directory}: does not fit this backbone ({str(e)[:300]})") from None
        if list(getattr(result, "unexpected_keys", []) or []):
            raise TargetParamError(f"{directory}: does not fit this backbone (unexpected "
                                   f"{list(result.unexpected_keys)[:3]})")
