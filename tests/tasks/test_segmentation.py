"""Segmentation task: decoder shapes at two input sizes, Dice/IoU by hand (empty ground truth included),
the loss, and the TPP stage at a larger input size."""

import math

import pytest
import torch

from tppeft.backbones import build_backbone
from tppeft.config import BackboneConfig, ConfigError, PeftConfig, PretextConfig
from tppeft.pretext import get_pretext
from tppeft.targets import get_target_method
from tppeft.tasks.decoders import ViTSegmenter, default_feature_blocks
from tppeft.tasks.segmentation import preview_indices, segmentation_scores, summarize_scores


@pytest.fixture(scope="module")
def b0_128():
    return build_backbone(BackboneConfig(), image_size=128)


@pytest.mark.parametrize("size", [64, 128])
def test_decoder_gives_full_resolution_logits(size, b0, b0_128):
    vit = (b0 if size == 64 else b0_128).fresh_model()
    get_target_method(PeftConfig()).attach(vit)
    model = ViTSegmenter(vit, num_classes=3, channels=8)
    assert model.feature_blocks == [3, 7, 11]  # patch 8 = three upsamplings by 2
    out = model(torch.randn(2, 3, size, size))
    assert out.shape == (2, 3, size, size)
    out.square().mean().backward()
    lora = [p for n, p in vit.named_parameters() if "lora_B" in n]
    assert all(p.grad is not None for p in lora) and all(p.grad is not None for p in model.head.parameters())


def test_feature_blocks(b0):
    assert default_feature_blocks(12, 4) == [2, 5, 8, 11]  # UNETR's 3, 6, 9, 12 for patch 16
    vit = b0.fresh_model()
    with pytest.raises(ConfigError, match="feature_blocks"):
        ViTSegmenter(vit, 2, feature_blocks=[5, 11])


def _masks(*rows):
    return torch.tensor(rows, dtype=torch.uint8).view(len(rows), 4, 4)


# four 4x4 images: partial overlap, empty/empty, empty truth with a false positive, perfect
TRUTH = _masks([1, 1, 0, 0, 1, 1, 0, 0] + [0] * 8, [0] * 16, [0] * 16, [0] * 12 + [1] * 4)
PRED = _masks([1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 1] + [0] * 4, [0] * 16, [0] * 15 + [1], [0] * 12 + [1] * 4)


def test_dice_and_iou_by_hand_with_empty_ground_truth_left_out():
    dice, iou = segmentation_scores(PRED, TRUTH, 2, ignore_empty=True)
    # image 0: TP 2, FP 2, FN 2 -> Dice 4/8, IoU 2/6; images 1 and 2 have no lesion: NaN (left out); image 3: 1
    assert dice[0, 0] == pytest.approx(0.5) and iou[0, 0] == pytest.approx(1 / 3)
    assert math.isnan(dice[1, 0]) and math.isnan(dice[2, 0]) and math.isnan(iou[2, 0])
    m = summarize_scores(dice, iou)
    assert m == pytest.approx({"dice": (0.5 + 1) / 2, "iou": (1 / 3 + 1) / 2})


def test_dice_and_iou_by_hand_with_empty_ground_truth_scored():
    dice, iou = segmentation_scores(PRED, TRUTH, 2, ignore_empty=False)
    # empty truth: 1 when the prediction is empty too (image 1), 0 for a false positive (image 2)
    assert dice[:, 0].tolist() == pytest.approx([0.5, 1.0, 0.0, 1.0])
    assert summarize_scores(dice, iou) == pytest.approx({"dice": 2.5 / 4, "iou": (1 / 3 + 2) / 4})


def test_multiclass_scores_per_class_and_mean():
    truth = torch.tensor([[[1, 1], [2, 0]], [[1, 0], [0, 0]]], dtype=torch.uint8)
    pred = torch.tensor([[[1, 2], [2, 0]], [[1, 1], [0, 0]]], dtype=torch.uint8)
    m = summarize_scores(*segmentation_scores(pred, truth, 3))
    # class 1: image 0 TP1 FN1 -> 2/3, image 1 TP1 FP1 -> 2/3; class 2: image 0 TP1 FP1 -> 2/3, image 1 empty
    assert m["dice_1"] == pytest.approx(2 / 3) and m["dice_2"] == pytest.approx(2 / 3)
    assert m["iou_1"] == pytest.approx(0.5) and m["dice"] == pytest.approx(2 / 3)
    nothing = summarize_scores(*segmentation_scores(torch.zeros(2, 2, 2, dtype=torch.uint8),
                                                    torch.zeros(2, 2, 2, dtype=torch.uint8), 2))
    assert math.isnan(nothing["dice"])  # no image has a lesion: undefined, never a fake 0 or 1


def test_preview_picks_lesions_and_one_empty_image():
    idx = preview_indices(TRUTH)
    assert idx == [0, 1, 3]


def test_tpp_stage_runs_at_a_larger_input_size(b0_128):
    """At 128x128 b0's MAE decoder (tied to 64x64) is dropped; a fresh decoder pre-trains the targets."""
    backbone = b0_128
    vit = backbone.fresh_model()
    get_target_method(PeftConfig()).attach(vit)
    task = get_pretext(PretextConfig())(backbone, vit, PretextConfig())
    assert task.decoder_source == "fresh"
    x = torch.randn(2, 3, 128, 128)
    loss = task.loss(x, torch.Generator().manual_seed(0))
    loss.backward()
    assert torch.isfinite(loss) and any(p.grad is not None and p.grad.abs().sum() > 0
                                        for n, p in vit.named_parameters() if "lora_" in n)


def test_block_features_match_timm_and_carry_vpt_prompts(b0):
    vit = b0.fresh_model()
    model = ViTSegmenter(vit, 2, channels=8)
    x = torch.randn(2, 3, 64, 64)
    ours = model.block_features(x)
    timm_own = vit.forward_intermediates(x, indices=[3, 7, 11], output_fmt="NCHW", intermediates_only=True)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(ours, timm_own, strict=True))
    # prompts inserted by a wrapped block stack must reach the decoder's features (and get gradients)
    vpt_vit = b0.fresh_model()
    get_target_method(PeftConfig(method="vpt_deep")).attach(vpt_vit)
    seg = ViTSegmenter(vpt_vit, 2, channels=8)
    seg(x).square().mean().backward()
    prompts = dict(vpt_vit.named_parameters())["blocks.prompts"]
    assert prompts.grad is not None and prompts.grad.abs().sum() > 0
