"""LoRA through Hugging Face ``peft``: low-rank updates on the linears of every transformer block."""

from __future__ import annotations

import json
from pathlib import Path

from peft import LoraConfig, PeftModel, get_peft_model, set_peft_model_state_dict
from safetensors.torch import load_file
from torch import nn

from tppeft.targets.base import TargetMethod, TargetParamError, register_target

# timm ViT block linears by short name; anchored so patch_embed.proj and head never match.
_MODULE_PATTERNS = {"qkv": r"attn\.qkv", "proj": r"attn\.proj", "fc1": r"mlp\.fc1", "fc2": r"mlp\.fc2"}


def target_modules_regex(targets: list[str]) -> str:
    """A regex that ``peft`` full-matches against module names, e.g. ``blocks.3.attn.qkv``."""
    alternatives = "|".join(_MODULE_PATTERNS[t] for t in targets)
    return rf"blocks\.\d+\.({alternatives})"


@register_target
class LoraMethod(TargetMethod):
    name = "lora"
    description = "LoRA (peft): A random, B zero, on the chosen block linears"

    def peft_config(self) -> LoraConfig:
        return LoraConfig(
            r=self.cfg.r, lora_alpha=self.cfg.alpha, lora_dropout=self.cfg.dropout,
            target_modules=target_modules_regex(self.cfg.targets), bias="none",
        )

    def attach(self, backbone: nn.Module) -> tuple[PeftModel, list[str]]:
        handle = get_peft_model(backbone, self.peft_config())
        names = [n for n, p in backbone.named_parameters() if "lora_" in n]
        for n, p in backbone.named_parameters():
            p.requires_grad_(n in names)
        if not names:
            raise TargetParamError(f"LoRA matched no module for targets {self.cfg.targets}")
        return handle, names

    def save(self, handle: PeftModel, directory: Path) -> None:
        handle.save_pretrained(str(directory))

    def load(self, handle: PeftModel, directory: Path) -> None:
        directory = Path(directory)
        cfg_path, weights = directory / "adapter_config.json", directory / "adapter_model.safetensors"
        if not cfg_path.is_file() or not weights.is_file():
            raise TargetParamError(f"{directory}: expected adapter_config.json and adapter_model.safetensors")
        saved = json.loads(cfg_path.read_text())
        if saved.get("peft_type") != "LORA":
            raise TargetParamError(f"{directory}: holds '{saved.get('peft_type')}' parameters, not LoRA")
        want = self.peft_config()
        for key in ("r", "lora_alpha", "target_modules"):
            if saved.get(key) != getattr(want, key):
                raise TargetParamError(f"{directory}: saved {key}={saved.get(key)!r} but this run uses "
                                       f"{getattr(want, key)!r}")
        state = load_file(weights)
        own = {k for k in handle.state_dict() if "lora_" in k}
        try:
            result = set_peft_model_state_dict(handle, state)
        except RuntimeError as e:  # shape mismatch: another backbone
            lines = [line.strip() for line in str(e).splitlines() if "size mismatch" in line] or [str(e)]
            raise TargetParamError(f"{directory}: does not fit this backbone ({lines[0]}; {len(lines)} tensor(s) "
                                   "differ)") from None
        unexpected = list(getattr(result, "unexpected_keys", []) or [])
        missing = [k for k in getattr(result, "missing_keys", []) or [] if k in own]
        if unexpected or missing or len(state) != len(own):
            raise TargetParamError(f"{directory}: does not fit this backbone (missing {missing[:3]}, "
                                   f"unexpected {unexpected[:3]}, {len(state)} saved vs {len(own)} expected)")
