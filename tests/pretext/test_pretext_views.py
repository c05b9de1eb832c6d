"""Batched multi-view transform: seeded, shapes of global and local crops, grey stays grey, range kept."""

import pytest
import torch
from conftest import BREAST

from tppeft.data import load_medmnist, resize_images, to_model_input
from tppeft.pretext.views import MultiCropViews, ViewsConfig, intensity_jitter

pytestmark = pytest.mark.usefixtures("one_thread")

MEAN, STD = torch.tensor([0.5, 0.5, 0.5]), torch.tensor([0.5, 0.5, 0.5])


def real_batch(n=8):
    ds = load_medmnist(BREAST, limit=n)
    return to_model_input(resize_images(ds["train"].images, 64), MEAN, STD)


def test_views_are_seeded_and_shaped():
    x = real_batch()
    views = MultiCropViews(ViewsConfig(local_crops=3, local_size=32), MEAN, STD)
    a = views(x, torch.Generator().manual_seed(5))
    b = views(x, torch.Generator().manual_seed(5))
    c = views(x, torch.Generator().manual_seed(6))
    assert [tuple(v.shape) for v in a] == [(8, 3, 64, 64)] * 2 + [(8, 3, 32, 32)] * 3
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    assert not torch.equal(a[0], c[0]) and not torch.equal(a[0], a[1])
    # with full-area crops (only the aspect ratio varies) and no flips or jitter, each view is nearest to its
    # own image
    plain = MultiCropViews(ViewsConfig(global_scale=(1.0, 1.0), hflip=False, brightness=0, contrast=0, gamma=0),
                           MEAN, STD, local_views=0)
    v0, v1 = plain(x, torch.Generator().manual_seed(5))
    for v in (v0, v1):
        assert torch.equal(torch.cdist(v.flatten(1), x.flatten(1)).argmin(1), torch.arange(8))


def test_views_stay_grey_and_in_range():
    x = real_batch()
    views = MultiCropViews(ViewsConfig(brightness=0.4, contrast=0.4, gamma=0.4), MEAN, STD)
    for v in views(x, torch.Generator().manual_seed(0)):
        raw = v * 0.5 + 0.5
        assert raw.min() >= -1e-6 and raw.max() <= 1 + 1e-6
        assert torch.equal(v[:, 0], v[:, 1]) and torch.equal(v[:, 1], v[:, 2])


def test_intensity_jitter_is_identity_without_jitter_and_varies_per_image():
    x = torch.rand(4, 1, 16, 16)
    g = torch.Generator().manual_seed(0)
    assert torch.allclose(intensity_jitter(x, g, 0, 0, 0), x)
    y = intensity_jitter(x.expand(4, 1, 16, 16).clone()[:1].repeat(4, 1, 1, 1), g, 0.3, 0.3, 0.3)
    assert len({round(float(m), 5) for m in y.mean(dim=(1, 2, 3))}) == 4
