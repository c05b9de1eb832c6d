"""DINO's head with batch norm (``pretext.dino.use_bn``): it gives the centred teacher a target where the
backbone's pooled features differ little between images, and it is refused on a head read from a checkpoint."""

import dataclasses
import math

import numpy as np
import pytest
import torch
from conftest import BREAST, shared_file
from PIL import Image

from tppeft.backbones.formats.base import DinoHeadWeights
from tppeft.config import PeftConfig, PretextConfig
from tppeft.data import load_medmnist, resize_images, to_model_input
from tppeft.options import ConfigError
from tppeft.pretext import get_pretext
from tppeft.pretext.encoder import encode, pooled
from tppeft.pretext.heads import DINOHead
from tppeft.targets import get_target_method

pytestmark = pytest.mark.usefixtures("one_thread")


def centred_teacher_entropy(logits: torch.Tensor, temp: float = 0.04) -> float:
    p = torch.softmax((logits - logits.mean(0)) / temp, dim=-1)
    return float(-(p * p.clamp_min(1e-12).log()).sum(-1).mean())


def test_batch_norm_gives_the_centred_teacher_a_target_on_features_alike_across_images(b0):
    ds = load_medmnist(BREAST, limit=32)
    x = to_model_input(resize_images(ds["train"].images, 64), torch.tensor(b0.mean), torch.tensor(b0.std))
    vit = b0.fresh_model().eval()
    with torch.no_grad():
        features = pooled(vit, encode(vit, x))
        cos = torch.nn.functional.normalize(features, dim=-1) @ torch.nn.functional.normalize(features, dim=-1).T
        assert float(cos[~torch.eye(len(x), dtype=torch.bool)].mean()) > 0.85  # b0's class token: alike (0.90)
        entropies = {}
        for use_bn in (False, True):
            torch.manual_seed(0)
            entropies[use_bn] = centred_teacher_entropy(DINOHead(vit.num_features, use_bn=use_bn)(features))
    ln_k = math.log(1024)
    assert entropies[False] > 0.95 * ln_k  # nearly uniform from the start: the collapse's starting point (0.96)
    assert entropies[True] < 0.8 * ln_k  # (0.74)


def test_the_head_norms_with_the_batchs_own_statistics():
    head = DINOHead(8, out_dim=16, hidden_dim=8, bottleneck_dim=4, use_bn=True)
    norms = [m for m in head.mlp if isinstance(m, torch.nn.BatchNorm1d)]
    assert len(norms) == 2 and not any(m.track_running_stats for m in norms)
    assert not any(k.endswith("running_mean") for k in head.state_dict())  # nothing for the teacher to mix
    head.eval()
    a, b = torch.randn(4, 8), torch.randn(4, 8)
    assert not torch.allclose(head(torch.cat([a, b]))[:4], head(torch.cat([a, a]))[:4])  # the batch's statistics


def test_batch_norm_is_refused_on_a_head_read_from_a_checkpoint(b0):
    vit = b0.fresh_model()
    get_target_method(PeftConfig()).attach(vit)
    saved = DINOHead(vit.num_features, out_dim=16, hidden_dim=8, bottleneck_dim=4)
    with_head = dataclasses.replace(b0, dino_head=DinoHeadWeights(dict(saved.state_dict()), None, "a test head"))
    cfg = PretextConfig(method="dino", views={"local_crops": 0}, dino={"use_bn": True})
    with pytest.raises(ConfigError, match="use_bn applies to a fresh head"):
        get_pretext(cfg)(with_head, vit, cfg)
    fresh = PretextConfig(method="dino", views={"local_crops": 0}, dino={"use_bn": True, "head": "fresh"})
    assert "batch norm" in get_pretext(fresh)(with_head, vit, fresh).describe()



def brain_mri(b0, n_per_class: int = 8) -> torch.Tensor:
    root = shared_file("classification/brain_mri/labels.csv").parent / "train"
    files = [f for c in sorted(root.iterdir()) for f in sorted(c.glob("*.png"))[:n_per_class]]
    images = torch.from_numpy(np.stack([np.asarray(Image.open(f).convert("L")) for f in files])).unsqueeze(1)
    return to_model_input(resize_images(images, 64), torch.tensor(b0.mean), torch.tensor(b0.std))


def test_the_stage_foresees_the_collapse_on_brain_mri_and_not_with_batch_norm(b0):
    x = brain_mri(b0)
    warnings = {}
    for use_bn in (False, True):
        vit = b0.fresh_model()
        get_target_method(PeftConfig()).attach(vit)
        torch.manual_seed(0)
        cfg = PretextConfig(method="dino", views={"local_crops": 0}, dino={"use_bn": use_bn})
        warnings[use_bn] = get_pretext(cfg)(b0, vit, cfg).start_warning(x)
    assert warnings[False] is not None and "DINO starts near its uniform collapse" in warnings[False]
    assert "pretext.dino.use_bn=true" in warnings[False]
    assert warnings[True] is None
