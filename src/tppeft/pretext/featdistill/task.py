"""Feature distillation on masked input: from a masked view, the backbone with its target parameters
predicts the frozen backbone's own features of the full image, at the masked positions and for the class
token (after MaskDistill, Peng et al., "A Unified View of Masked Image Modeling", arXiv:2210.10615, with the
frozen backbone itself as the teacher).

The teacher is the shared backbone template, which never carries target parameters, so its features are
those of the backbone alone whatever the target-parameter method (LoRA, adapters, prompts, selected
biases...): no method needs a way to switch its parameters off. The masked view enters the encoder as in
SimMIM (a learnable mask token in place of each masked patch, full sequence) and a zero-initialised residual
linear predictor maps the output tokens to the teacher's: cheap, no pixel decoder. Visible-only encoding
(MAE's) was tried first and left out: on b0, itself MAE-trained, the visible tokens and class token of a
half-masked view already match the full-image features almost exactly (layer-normed MSE 0.03), which leaves
nothing to learn.
"""

from __future__ import annotations

import torch
from torch import nn

from tppeft.backbones import Backbone
from tppeft.pretext.base import PretextTask
from tppeft.pretext.config import PretextConfig
from tppeft.pretext.encoder import encode_with_mask_tokens
from tppeft.pretext.heads import FeaturePredictor
from tppeft.pretext.losses import feature_distillation_loss
from tppeft.pretext.masking import mask_from_keep, random_keep_indices


class MaskedFeatureDistillation(PretextTask):
    name = "featdistill"

    def __init__(self, backbone: Backbone, vit: nn.Module, cfg: PretextConfig):
        super().__init__(backbone, vit, cfg)
        self.vit = vit
        # A plain attribute, not a submodule: the template is shared by every run and must not be moved,
        # saved with the task or put in train mode by it.
        object.__setattr__(self, "teacher", backbone.model)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, vit.embed_dim))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.predictor = FeaturePredictor(vit.num_features)

    def describe(self) -> str:
        f = self.cfg.featdistill
        return f"featdistill ({f.tokens} tokens, {f.loss} loss, mask ratio {self.cfg.mask_ratio})"

    def head_param_groups(self, lr: float) -> list[dict]:
        return [{"params": [self.mask_token, *self.predictor.parameters()], "lr": lr}]

    def loss(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        b = images.shape[0]
        length = self.vit.patch_embed.num_patches
        prefix = self.vit.num_prefix_tokens
        keep, _ = random_keep_indices(b, length, self.cfg.mask_ratio, generator, images.device)
        masked = mask_from_keep(keep, length)
        with torch.no_grad():
            target = self.teacher.forward_features(images)
        pred = self.predictor(encode_with_mask_tokens(self.vit, images, masked, self.mask_token))
        tokens = self.cfg.featdistill.tokens
        if tokens == "cls":
            return feature_distillation_loss(pred[:, :prefix], target[:, :prefix], self.cfg.featdistill.loss)
        if tokens == "masked":  # class token + masked patches; every image has the same number masked
            # positions of the masked patches in increasing order, by a gather (a boolean index would wait for
            # the device to count them)
            order = masked.to(torch.uint8).sort(dim=1, descending=True, stable=True).indices
            hidden = order[:, :length - keep.shape[1]]
            pred, target = (torch.cat([t[:, :prefix], t[:, prefix:].gather(
                1, hidden.unsqueeze(-1).expand(-1, -1, t.shape[-1]))], dim=1) for t in (pred, target))
        return feature_distillation_loss(pred, target, self.cfg.featdistill.loss)
