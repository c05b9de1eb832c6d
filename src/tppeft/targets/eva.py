"""EVA initialisation of LoRA (Paischer et al., "One Initialization to Rule them All: Fine-tuning via Explained
Variance Adaptation", 2024) through ``peft``'s own implementation (``initialize_lora_eva_weights``).

EVA sets each LoRA ``A`` to the top right-singular vectors of the layer's input activations on downstream
data (incremental SVD over batches) and ``B`` to zero, and may move rank between layers (``rho``). peft's
defaults assume language-model inputs (dict batches, attention masks); a timm ViT takes an image tensor, so
the forward function below calls the model on the tensor and every token of every image counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
from peft import get_peft_model, initialize_lora_eva_weights
from peft.tuners.lora.config import EvaConfig
from torch import nn

from tppeft.targets.base import Attached, TargetParamError
from tppeft.targets.config import PeftConfig
from tppeft.targets.lora.model import LoraMethod


class EvaSettings(Protocol):
    """What EVA reads of its options (the ``eva`` section)."""

    rho: float
    tau: float
    whiten: bool
    max_batches: int


class _Capped:
    """A forward function that gives up after ``limit`` batches: peft cycles over the data until every layer's
    SVD has converged, which on unlucky data could take very long."""

    def __init__(self, limit: int):
        self.limit, self.calls = limit, 0

    def __call__(self, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls > self.limit:
            raise TargetParamError(f"eva: the activation SVD did not converge within eva.max_batches={self.limit} "
                                   "batches; raise it or lower eva.tau")
        return model(images)


def attach_eva_lora(vit: nn.Module, peft_cfg: PeftConfig, eva_cfg: EvaSettings, batches: Sequence[torch.Tensor],
                    backbone_identity: dict | None = None) -> tuple[LoraMethod, Attached, list[str], int]:
    """Attach LoRA to ``vit`` (in place) and initialise it by EVA from ``batches`` of model inputs.

    Returns the method, peft's handle, the target-parameter names and the number of batches peft consumed.
    """
    method = LoraMethod(peft_cfg, backbone_identity)
    config = method.peft_config()
    config.init_lora_weights = "eva"
    config.eva_config = EvaConfig(rho=eva_cfg.rho, tau=eva_cfg.tau, whiten=eva_cfg.whiten)
    # low_cpu_mem_usage: A is not randomly initialised first, EVA writes every A itself
    model = get_peft_model(vit, config, low_cpu_mem_usage=True)
    forward = _Capped(eva_cfg.max_batches)
    initialize_lora_eva_weights(model, dataloader=list(batches), forward_fn=forward, prepare_model_inputs_fn=None,
                                prepare_layer_inputs_fn=None, show_progress_bar=False)
    names = [n for n, _ in vit.named_parameters() if "lora_" in n]
    for n, p in vit.named_parameters():
        p.requires_grad_(n in names)
    if not names:
        raise TargetParamError(f"eva: no LoRA layer kept a rank for targets {peft_cfg.targets}")
    return method, Attached(vit, names, model), names, forward.calls
