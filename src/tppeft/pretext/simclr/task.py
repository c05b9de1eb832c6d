"""SimCLR-style contrastive learning of the target parameters (Chen et al., "A Simple Framework for
Contrastive Learning of Visual Representations", ICML 2020, arXiv:2002.05709): two augmented views of
every image, a projection head, and the NT-Xent loss with the other images of the batch as negatives.

SimCLR rather than MoCo v3: with the backbone frozen the only momentum encoder MoCo would add is an EMA of
the target parameters, which ``dino`` already covers; SimCLR keeps this task a fixed objective.
"""

from __future__ import annotations

import torch
from torch import nn

from tppeft.backbones import Backbone
from tppeft.pretext.base import PretextTask
from tppeft.pretext.config import PretextConfig
from tppeft.pretext.encoder import ViewEncoder
from tppeft.pretext.heads import ProjectionHead
from tppeft.pretext.losses import NTXentLoss
from tppeft.pretext.views.transform import MultiCropViews


class Contrastive(PretextTask):
    name = "simclr"
    own_views = True
    batch_coupled = True

    def __init__(self, backbone: Backbone, vit: nn.Module, cfg: PretextConfig):
        super().__init__(backbone, vit, cfg)
        s = cfg.simclr
        self.encoder = ViewEncoder(vit, ProjectionHead(vit.num_features, s.hidden_dim, s.out_dim))
        self.views = MultiCropViews(cfg.views, torch.tensor(backbone.mean), torch.tensor(backbone.std),
                                    global_views=2, local_views=0)
        self.criterion = NTXentLoss(s.temperature)

    def describe(self) -> str:
        return f"simclr (2 views, temperature {self.cfg.simclr.temperature})"

    def head_param_groups(self, lr: float) -> list[dict]:
        return [{"params": list(self.encoder.head.parameters()), "lr": lr}]

    def loss(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        v0, v1 = self.views(images, generator)
        z0, z1 = self.encoder(torch.cat([v0, v1])).chunk(2)
        return self.criterion(z0, z1)
