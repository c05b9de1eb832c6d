"""The ViT token paths of the pretext tasks agree with timm's own forward where they overlap."""

import pytest
import torch

from tppeft.pretext.encoder import encode, encode_visible, encode_with_mask_tokens, pooled

pytestmark = pytest.mark.usefixtures("one_thread")


def test_paths_reduce_to_timms_forward(b0):
    vit = b0.model
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = vit.forward_features(x)
        assert torch.allclose(encode(vit, x), ref, atol=1e-5)
        none_masked = torch.zeros(2, 64, dtype=torch.bool)
        assert torch.allclose(encode_with_mask_tokens(vit, x, none_masked, torch.zeros(1, 1, 192)), ref, atol=1e-5)
        assert torch.allclose(encode_visible(vit, x, torch.arange(64).expand(2, -1)), ref, atol=1e-5)
        assert torch.allclose(pooled(vit, ref), vit(x), atol=1e-5)


def test_mask_tokens_replace_masked_patches_only(b0):
    vit = b0.model
    x = torch.randn(1, 3, 64, 64)
    masked = torch.zeros(1, 64, dtype=torch.bool)
    masked[0, :32] = True
    token = torch.randn(1, 1, 192)
    with torch.no_grad():
        out = encode_with_mask_tokens(vit, x, masked, token)
        y = x.clone()
        y[..., :32, :] = torch.randn(1, 3, 32, 64)  # the top half = patches 0..31 in row-major order
        assert torch.allclose(encode_with_mask_tokens(vit, y, masked, token), out, atol=1e-5)
        assert not torch.allclose(encode(vit, y), encode(vit, x), atol=1e-3)


def test_smaller_crops_run_with_resampled_positions(b0):
    with torch.no_grad():
        out = encode(b0.model, torch.randn(3, 3, 32, 32))
    assert out.shape == (3, 1 + 16, 192) and torch.isfinite(out).all()
