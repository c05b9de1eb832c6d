"""(IA)³ through Hugging Face ``peft`` (Liu et al., NeurIPS 2022): learned per-channel scaling vectors,
started at one. On the targeted block linears it scales the output, on the feed-forward ones
(``peft.ia3.feedforward``, default ``fc2``) the input, i.e. the MLP's hidden activation, as the paper does.
timm's fused ``qkv`` linear means queries are scaled too (the paper scales keys and values only).
Config: ``peft.targets``, ``peft.ia3.feedforward``.
"""

from __future__ import annotations

from peft import IA3Config

from tppeft.targets.modules import target_modules_regex
from tppeft.targets.peft_backed import PeftBackedMethod


class Ia3Method(PeftBackedMethod):
    name = "ia3"
    peft_type = "IA3"
    hyper_keys = ("targets", "ia3")
    peft_keys = ("feedforward_modules",)

    def peft_config(self) -> IA3Config:
        feedforward = [t for t in self.cfg.ia3.feedforward if t in self.cfg.targets]
        return IA3Config(
            target_modules=target_modules_regex(self.cfg.targets),
            # a regex that matches nothing when no targeted linear is feed-forward (peft needs a value)
            feedforward_modules=target_modules_regex(feedforward) if feedforward else r"(?!)",
        )
