"""VPT in both stages: prompts go in after the class token, every block sees them, consumers never do,
and the MAE pretext carries them while it masks patch tokens only."""

import pytest
import torch

from tppeft.config import PeftConfig, PretextConfig
from tppeft.pretext import get_pretext
from tppeft.pretext.mae import encode_visible
from tppeft.pretext.masking import random_keep_indices
from tppeft.targets import get_target_method
from tppeft.targets.vpt import PromptedBlocks

TOKENS = 5


def _vpt(b0, method):
    vit = b0.fresh_model()
    torch.manual_seed(0)
    handle, names = get_target_method(PeftConfig(method=method, vpt={"tokens": TOKENS})).attach(vit)
    return vit, names


def _record_block_inputs(vit):
    seen = []
    hooks = [blk.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
             for blk in vit.blocks]
    return seen, hooks


@pytest.mark.parametrize("method", ["vpt_shallow", "vpt_deep"])
def test_prompts_sit_after_the_class_token_in_every_block(b0, method):
    vit, names = _vpt(b0, method)
    assert isinstance(vit.blocks, PromptedBlocks) and names == ["blocks.prompts"]
    assert set(vit.state_dict()) - {"blocks.prompts"} == set(b0.model.state_dict())  # timm names unchanged
    prompts = vit.blocks.prompts
    assert prompts.shape == ((12 if method == "vpt_deep" else 1), TOKENS, 192)
    seen, hooks = _record_block_inputs(vit)
    out = vit.forward_features(torch.randn(2, 3, 64, 64))
    for h in hooks:
        h.remove()
    assert out.shape == (2, 1 + 64, 192)  # the prompts are gone after the last block
    assert all(x.shape == (2, 1 + TOKENS + 64, 192) for x in seen)
    assert torch.equal(seen[0][:, 1:1 + TOKENS], prompts[0].detach().expand(2, -1, -1))
    if method == "vpt_deep":  # each block gets its own fresh prompts in place of the previous outputs
        assert all(torch.equal(seen[i][:, 1:1 + TOKENS], prompts[i].detach().expand(2, -1, -1)) for i in range(12))
    else:  # shallow: later blocks see the previous block's prompt outputs
        assert not torch.equal(seen[1][:, 1:1 + TOKENS], prompts[0].detach().expand(2, -1, -1))


@pytest.mark.parametrize("method", ["vpt_shallow", "vpt_deep"])
def test_mae_encoder_carries_the_prompts_and_masks_patches_only(b0, method):
    vit, _ = _vpt(b0, method)
    keep, _ = random_keep_indices(2, 64, 0.5, torch.Generator().manual_seed(0), torch.device("cpu"))
    seen, hooks = _record_block_inputs(vit)
    latent = encode_visible(vit, torch.randn(2, 3, 64, 64), keep)
    for h in hooks:
        h.remove()
    assert seen[0].shape[1] == 1 + TOKENS + 32  # class token + all prompts + the 32 visible patches
    assert latent.shape == (2, 1 + 32, 192)  # what the decoder gets: class token + visible patches
    task = get_pretext(PretextConfig())(b0, vit, PretextConfig())
    task.loss(torch.randn(4, 3, 64, 64), torch.Generator().manual_seed(1)).backward()
    grad = vit.blocks.prompts.grad
    assert grad is not None and (grad.abs().sum(dim=(1, 2)) > 0).all()  # every prompt set learns from MAE
