"""LoRA through Hugging Face ``peft`` (Hu et al., ICLR 2022): low-rank updates B·A on block linears,
A random and B zero at the start; options rsLoRA (scale alpha/sqrt(r), Kalajdzievski 2023) and DoRA
(weight-decomposed, Liu et al., ICML 2024). Config: ``peft.r``, ``alpha``, ``dropout``, ``targets``,
``use_rslora``, ``use_dora``."""

from __future__ import annotations

from peft import LoraConfig

from tppeft.targets.modules import target_modules_regex
from tppeft.targets.peft_backed import PeftBackedMethod

__all__ = ["LoraMethod", "target_modules_regex"]


class LoraMethod(PeftBackedMethod):
    name = "lora"
    peft_type = "LORA"
    hyper_keys = ("r", "alpha", "targets", "use_rslora", "use_dora")
    peft_keys = ("r", "lora_alpha", "use_rslora", "use_dora")

    def peft_config(self) -> LoraConfig:
        return LoraConfig(
            r=self.cfg.r, lora_alpha=self.cfg.alpha, lora_dropout=self.cfg.dropout,
            target_modules=target_modules_regex(self.cfg.targets), bias="none",
            use_rslora=self.cfg.use_rslora, use_dora=self.cfg.use_dora,
        )
