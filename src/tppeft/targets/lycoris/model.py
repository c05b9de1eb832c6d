"""The LyCORIS low-rank family through Hugging Face ``peft`` on block linears.

- LoHa: the weight update is a Hadamard product of two low-rank products (Hyeon-Woo et al., ICLR 2022,
  "FedPara"); peft starts one factor at zero, so the update starts at zero.
- LoKr: the update is a Kronecker product of a small factor and a (low-rank) factor (Yeh et al., 2023,
  "LyCORIS"); peft starts one factor at zero.

Config: ``peft.r``, ``alpha``, ``dropout`` (rank dropout), ``targets``; LoKr also ``peft.lokr.*``.
"""

from __future__ import annotations

from peft import LoHaConfig, LoKrConfig

from tppeft.targets.modules import target_modules_regex
from tppeft.targets.peft_backed import PeftBackedMethod


class LohaMethod(PeftBackedMethod):
    name = "loha"
    peft_type = "LOHA"
    hyper_keys = ("r", "alpha", "targets")
    peft_keys = ("r", "alpha")

    def peft_config(self) -> LoHaConfig:
        return LoHaConfig(r=self.cfg.r, alpha=self.cfg.alpha, rank_dropout=self.cfg.dropout,
                          target_modules=target_modules_regex(self.cfg.targets))


class LokrMethod(PeftBackedMethod):
    name = "lokr"
    peft_type = "LOKR"
    hyper_keys = ("r", "alpha", "targets", "lokr")
    peft_keys = ("r", "alpha", "decompose_both", "decompose_factor")

    def peft_config(self) -> LoKrConfig:
        return LoKrConfig(r=self.cfg.r, alpha=self.cfg.alpha, rank_dropout=self.cfg.dropout,
                          target_modules=target_modules_regex(self.cfg.targets),
                          decompose_both=self.cfg.lokr.decompose_both,
                          decompose_factor=self.cfg.lokr.decompose_factor)
