"""baseline_matched's budget checked independently: the FLOPs the tool counts for one training step of each stage
equal an analytic count of the ViT-Tiny/8 at 64 px (b0) with LoRA, and the documented numbers follow from them."""

import math

import pytest

from tppeft.config import load_config
from tppeft.engine.loop import epoch_steps
from tppeft.experiment.budget import images_per_epoch, matched_budget
from tppeft.experiment.context import prepare_context

# b0: 64 patches of 8x8x3 and a class token, width 192, 12 blocks, MLP 4x; b0's MAE decoder: width 128, 4 blocks.
PATCHES, PATCH_IN, WIDTH, DEPTH, DEC_WIDTH, DEC_DEPTH, PIXELS_PER_PATCH = 64, 8 * 8 * 3, 192, 12, 128, 4, 192


def _linears(width: int) -> dict[str, tuple[int, int]]:
    return {"qkv": (width, 3 * width), "proj": (width, width), "fc1": (width, 4 * width), "fc2": (4 * width, width)}


def encoder_flops(tokens: int, r: int) -> int:
    """Forward + backward of the frozen encoder with LoRA (rank r) on qkv, proj, fc1, fc2 of every block.

    A matmul costs 2*m*n*k. Forward: the patch projection, each block's four linears plus LoRA's A and B, and
    attention's two batched matmuls. Backward: frozen weights pass gradients to their input only, LoRA's A and B
    also get weight gradients, attention's matmuls need both operands' gradients (twice their forward); nothing
    before block 0's qkv needs a gradient (its input comes from frozen weights and pixels)."""
    fwd = 2 * PATCHES * PATCH_IN * WIDTH
    bwd = 0
    for block in range(DEPTH):
        for name, (i, o) in _linears(WIDTH).items():
            first = block == 0 and name == "qkv"
            fwd += 2 * tokens * i * o + 2 * tokens * r * (i + o)
            bwd += (0 if first else 2 * tokens * i * o)  # input gradient through the frozen weight
            bwd += 2 * tokens * i * r * (1 if first else 2)  # A: weight gradient (+ input gradient)
            bwd += 2 * 2 * tokens * r * o  # B: weight and input gradients
        fwd += 2 * 2 * tokens * tokens * WIDTH
        bwd += 2 * 2 * 2 * tokens * tokens * WIDTH
    return fwd + bwd


def finetune_flops(r: int, classes: int) -> int:
    head = 2 * WIDTH * classes
    return encoder_flops(PATCHES + 1, r) + 3 * head  # head: forward, weight gradient, input gradient


def mae_flops(r: int, mask_ratio: float) -> int:
    """The encoder on the visible patches, then b0's frozen decoder on all 65 tokens (input gradients only)."""
    visible = 1 + round(PATCHES * (1 - mask_ratio))
    dec = 2 * visible * WIDTH * DEC_WIDTH  # dec_embed of the visible tokens
    dec_attn = 2 * 2 * (PATCHES + 1) ** 2 * DEC_WIDTH
    for _ in range(DEC_DEPTH):
        dec += sum(2 * (PATCHES + 1) * i * o for i, o in _linears(DEC_WIDTH).values()) + dec_attn
    dec += 2 * PATCHES * DEC_WIDTH * PIXELS_PER_PATCH  # dec_pred, class token dropped
    return encoder_flops(visible, r) + 2 * dec + DEC_DEPTH * dec_attn  # backward: 1x linears, 2x attention


@pytest.fixture(scope="module")
def default_budget():
    ctx = prepare_context(load_config(None, ["threads=1"]), log=lambda s: None)
    return ctx, matched_budget(ctx)


def test_counted_flops_equal_the_analytic_count(default_budget):
    ctx, b = default_budget
    cfg = ctx.cfg
    assert b["finetune_flops_per_image_step"] == finetune_flops(cfg.peft.r, 2)
    assert b["pretext_flops_per_image_step"] == mae_flops(cfg.peft.r, cfg.pretext.mask_ratio)


def test_documented_budget_follows_from_the_counts(default_budget):
    ctx, b = default_budget
    cfg = ctx.cfg
    n = len(ctx.data["train"])
    assert n == 546
    # images per epoch: the last partial batch is dropped when a full one exists
    assert images_per_epoch(n, cfg.pretext.batch_size) == 8 * 64 == epoch_steps(n, 64)[0] * 64
    assert images_per_epoch(n, cfg.finetune.batch_size) == 17 * 32
    assert b["pretext_flops_per_epoch"] == b["pretext_flops_per_image_step"] * 512
    assert b["finetune_flops_per_epoch"] == b["finetune_flops_per_image_step"] * 544
    # the numbers of docs/arms.md: 1.03 vs 1.60 GFLOPs per image, 6 TPP epochs = 3.6 fine-tuning epochs -> +4
    assert round(b["pretext_flops_per_image_step"] / 1e9, 2) == 1.03
    assert round(b["finetune_flops_per_image_step"] / 1e9, 2) == 1.60
    assert round(b["tpp_stage_in_finetune_epochs"], 1) == 3.6
    assert b["extra_epochs"] == math.ceil(b["tpp_stage_in_finetune_epochs"]) == 4


def test_a_shared_stage_charges_each_run_its_share(default_budget):
    """baseline_matched.stage_shared_by=K: one stage serves K fine-tuning runs, so each is charged 1/K of it."""
    _, b = default_budget
    ctx = prepare_context(load_config(None, ["threads=1", "baseline_matched.stage_shared_by=3"]), log=lambda s: None)
    shared = matched_budget(ctx)
    assert shared["tpp_stage_in_finetune_epochs"] == b["tpp_stage_in_finetune_epochs"]  # the stage costs the same
    assert shared["stage_shared_by"] == 3 and b["stage_shared_by"] == 1
    assert shared["extra_epochs"] == math.ceil(b["tpp_stage_in_finetune_epochs"] / 3) == 2  # 3.6 / 3, rounded up
    assert "shared by 3 fine-tuning runs" in shared["rule"] and "shared" not in b["rule"]


def test_a_shared_stage_and_hand_set_epochs_are_refused():
    with pytest.raises(ValueError, match="set one of them"):
        load_config(None, ["arms=[baseline,tpp,baseline_matched]", "baseline_matched.extra_epochs=3",
                           "baseline_matched.stage_shared_by=2"])
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        load_config(None, ["baseline_matched.stage_shared_by=0"])
