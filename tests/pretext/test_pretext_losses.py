"""Pretext losses against direct, loop-by-loop computations of their definitions."""

import math

import torch
import torch.nn.functional as F

from tppeft.pretext.losses import DINOLoss, NTXentLoss, feature_distillation_loss, masked_patch_loss


def test_ntxent_matches_its_definition():
    torch.manual_seed(0)
    z0, z1, tau = torch.randn(5, 8), torch.randn(5, 8), 0.3
    z = F.normalize(torch.cat([z0, z1]), dim=1)
    total = 0.0
    for i in range(10):
        pos = (i + 5) % 10
        sims = [math.exp(float(z[i] @ z[k]) / tau) for k in range(10) if k != i]
        total += -math.log(math.exp(float(z[i] @ z[pos]) / tau) / sum(sims))
    assert abs(float(NTXentLoss(tau)(z0, z1)) - total / 10) < 1e-5
    assert float(NTXentLoss(tau)(z0, z0)) < float(NTXentLoss(tau)(z0, z1))  # identical views are easy


def test_dino_loss_matches_its_definition_and_centres_only_in_training():
    torch.manual_seed(0)
    t, s = torch.randn(2, 3, 6), torch.randn(4, 3, 6)
    loss_fn = DINOLoss(6, student_temp=0.1, teacher_temp=0.04, center_momentum=0.9)
    loss_fn.center.fill_(0.1)
    terms = []
    for i in range(2):
        for j in range(4):
            if i != j:
                p = F.softmax((t[i] - 0.1) / 0.04, dim=-1)
                terms.append(-(p * F.log_softmax(s[j] / 0.1, dim=-1)).sum(-1).mean())
    loss_fn.eval()
    assert torch.allclose(loss_fn(t, s), torch.stack(terms).mean(), atol=1e-5)
    assert torch.equal(loss_fn.center, torch.full((1, 6), 0.1))
    loss_fn.train()
    loss_fn(t, s)
    assert torch.allclose(loss_fn.center, 0.9 * 0.1 + 0.1 * t.flatten(0, 1).mean(0, keepdim=True))


def test_masked_patch_loss_counts_masked_patches_only():
    pred, target = torch.zeros(1, 4, 2), torch.tensor([[[1.0, 1.0], [2.0, 2.0], [9.0, 9.0], [9.0, 9.0]]])
    masked = torch.tensor([[True, True, False, False]])
    assert float(masked_patch_loss(pred, target, masked, "mse")) == 2.5
    assert float(masked_patch_loss(pred, target, masked, "l1")) == 1.5


def test_feature_loss_ignores_scale_and_offset_of_features():
    x = torch.randn(2, 3, 16)
    assert float(feature_distillation_loss(3 * x + 1, x)) < 1e-5
    assert float(feature_distillation_loss(3 * x, x, "cosine")) < 1e-6
    assert float(feature_distillation_loss(-x, x, "cosine")) > 1.9
