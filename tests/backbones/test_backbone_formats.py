"""Every checkpoint layout, with small randomly initialised models written in that layout: the mapped backbone's
features and the mapped pretext head's loss equal the source model's own forward (transformers' ViTMAE, ViT and
Dinov2; MAE's and DINO's code, written out below as references)."""

from __future__ import annotations

import argparse
import math
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from timm.layers import PatchEmbed
from timm.models.vision_transformer import Block, VisionTransformer
from torch import nn

from tppeft.backbones import BackboneError, build_backbone, frozen_state_digest
from tppeft.config import BackboneConfig, PretextConfig
from tppeft.pretext.dino.task import SelfDistillation
from tppeft.pretext.encoder import encode_visible
from tppeft.pretext.heads import DINOHead
from tppeft.pretext.mae.task import MaskedReconstruction
from tppeft.pretext.masking import patchify

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE, PATCH, DIM, DEPTH, HEADS = 32, 8, 48, 2, 3
L = (SIZE // PATCH) ** 2


def randomise(module: nn.Module, seed: int = 0) -> None:
    """Every parameter random (norm gains around 1), so that no mapping error can hide behind an init value."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=g) * 0.1
            p.copy_(1 + noise if ("norm" in name or "layernorm" in name) and name.endswith("weight") else noise * 2)


def images(n: int = 4, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def fixed_noise(n: int = 4, seed: int = 2) -> torch.Tensor:
    return torch.rand(n, L, generator=torch.Generator().manual_seed(seed))


def keep_restore(noise: torch.Tensor, mask_ratio: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The mask that ``noise`` fixes, as MAE (and transformers' ViTMAE) draw it."""
    shuffle = noise.argsort(dim=1)
    return shuffle[:, :int(L * (1 - mask_ratio))], shuffle.argsort(dim=1)


def mae_task(backbone, **options) -> MaskedReconstruction:
    cfg = PretextConfig(**{"method": "mae", "mask_ratio": 0.75, "norm_pix_loss": True, **options})
    return MaskedReconstruction(backbone, backbone.fresh_model(), cfg).eval()


# ---------------------------------------------------------------- Hugging Face transformers folders

def hf_vit_mae(folder, decoder: bool = True, **config):
    from transformers import ViTMAEConfig, ViTMAEForPreTraining, ViTMAEModel

    cfg = ViTMAEConfig(**{"hidden_size": DIM, "num_hidden_layers": DEPTH, "num_attention_heads": HEADS,
                          "intermediate_size": 2 * DIM, "image_size": SIZE, "patch_size": PATCH,
                          "decoder_hidden_size": 32, "decoder_num_hidden_layers": 2, "decoder_num_attention_heads": 4,
                          "decoder_intermediate_size": 64, "norm_pix_loss": True, "mask_ratio": 0.75, **config})
    model = (ViTMAEForPreTraining if decoder else ViTMAEModel)(cfg)
    randomise(model)
    model.save_pretrained(folder)
    return model.eval()


@pytest.fixture(scope="module")
def vit_mae(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vit_mae")
    return folder, hf_vit_mae(folder)


def test_hf_vit_mae_features_and_loss_equal_transformers_own(vit_mae):
    from transformers import ViTMAEModel

    folder, model = vit_mae
    backbone = build_backbone(BackboneConfig(checkpoint=str(folder)))
    assert (backbone.image_size, backbone.patch_size, backbone.identity["layout"]) == (SIZE, PATCH, "hf:vit_mae")
    assert backbone.identity["arch_kwargs"]["num_heads"] == HEADS and backbone.identity["norm_eps"] == 1e-12
    assert backbone.mean == (0.485, 0.456, 0.406)  # no preprocessor_config.json: MAE's ImageNet convention
    x, noise = images(), fixed_noise()
    # features: transformers' encoder with nothing masked and the patches left in order
    encoder = ViTMAEModel.from_pretrained(folder, mask_ratio=0.0).eval()
    with torch.no_grad():
        theirs = encoder(pixel_values=x, noise=torch.arange(L).float().expand(4, L)).last_hidden_state
        ours = backbone.model.forward_features(x)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)
    # the loss of ViTMAEForPreTraining for the mask its noise fixes, and its predictions, in its own patch order
    task = mae_task(backbone, decoder="pretrained")
    assert task.patch_order == "hwc" and task.head_source.startswith("pretrained MAE decoder (Hugging Face")
    keep, restore = keep_restore(noise, 0.75)
    with torch.no_grad():
        out = model(pixel_values=x, noise=noise)
        pred = task.decoder(encode_visible(task.vit, x, keep), restore, 1)
        loss = task.masked_loss(x, keep, restore)
    torch.testing.assert_close(pred, out.logits, rtol=1e-4, atol=1e-4)
    assert math.isclose(float(loss), float(out.loss), rel_tol=1e-5)
    # its targets are ViTMAE's own patches, in (row, column, channel) order, not the tool's (channel, row, column)
    assert torch.equal(patchify(x, PATCH, task.patch_order), model.patchify(x))
    assert not torch.equal(patchify(x, PATCH, "chw"), model.patchify(x))


LEGACY_NAMES = (("attention.q_proj", "attention.attention.query"), ("attention.k_proj", "attention.attention.key"),
                ("attention.v_proj", "attention.attention.value"), ("attention.o_proj", "attention.output.dense"),
                ("mlp.fc1", "intermediate.dense"), ("mlp.fc2", "output.dense"))


def test_hf_older_and_newer_key_names_load_alike(vit_mae, tmp_path):
    """transformers' own classes read the keys of transformers 4 checkpoints (``encoder.layer.N.attention.attention.
    query``, ``decoder.decoder_layers.N...``) and of transformers 5 modules (``layers.N.attention.q_proj``)."""
    import re
    import shutil

    from safetensors.torch import save_file

    folder, model = vit_mae
    state = {k: v.contiguous() for k, v in model.state_dict().items()}

    def legacy(k: str) -> str:
        k = re.sub(r"^vit\.layers\.", "vit.encoder.layer.", k)
        for new, old in LEGACY_NAMES:
            k = k.replace(new, old)
        return k

    reference = build_backbone(BackboneConfig(checkpoint=str(folder)))
    for rename in (lambda k: k, legacy):
        other = tmp_path / rename.__name__
        other.mkdir()
        shutil.copy(folder / "config.json", other)
        save_file({rename(k): v for k, v in state.items()}, str(other / "model.safetensors"), metadata={"format": "pt"})
        b = build_backbone(BackboneConfig(checkpoint=str(other)))
        assert frozen_state_digest(b.model) == frozen_state_digest(reference.model)
        assert all(torch.equal(b.decoder_state[k], reference.decoder_state[k]) for k in reference.decoder_state)


def test_hf_vit_and_dinov2_features_equal_transformers_own(tmp_path):
    from transformers import Dinov2Config, Dinov2Model, ViTConfig, ViTForImageClassification, ViTModel

    x = images()
    vit_cfg = ViTConfig(hidden_size=DIM, num_hidden_layers=DEPTH, num_attention_heads=HEADS, intermediate_size=96,
                        image_size=SIZE, patch_size=PATCH, num_labels=5)
    classifier = ViTForImageClassification(vit_cfg)  # a fine-tuned checkpoint: `vit.` prefix and a classifier
    randomise(classifier)
    classifier.save_pretrained(tmp_path / "vit")
    dino_cfg = Dinov2Config(hidden_size=DIM, num_hidden_layers=DEPTH, num_attention_heads=HEADS, mlp_ratio=2,
                            image_size=SIZE, patch_size=PATCH, layerscale_value=0.5)
    dinov2 = Dinov2Model(dino_cfg)
    randomise(dinov2)
    dinov2.save_pretrained(tmp_path / "dinov2")
    (tmp_path / "dinov2" / "preprocessor_config.json").write_text('{"image_mean": [0.1, 0.2, 0.3], '
                                                                  '"image_std": [0.4, 0.5, 0.6]}')
    for name, theirs_model in (("vit", ViTModel.from_pretrained(tmp_path / "vit", add_pooling_layer=False)),
                               ("dinov2", dinov2)):
        backbone = build_backbone(BackboneConfig(checkpoint=str(tmp_path / name)))
        assert backbone.decoder_state is None and backbone.dino_head is None
        with torch.no_grad():
            theirs = theirs_model.eval()(pixel_values=x).last_hidden_state
            ours = backbone.model.forward_features(x)
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)
    assert backbone.identity["name"] == "vit_small_patch14_dinov2" or backbone.identity["arch_kwargs"]["init_values"]
    assert backbone.mean == (0.1, 0.2, 0.3) and backbone.provenance["normalisation"] == "preprocessor_config.json"


# ---------------------------------------------------------------- MAE's own layout (.pth)

class MaeReference(nn.Module):
    """facebookresearch/mae ``models_mae.MaskedAutoencoderViT`` as its code computes: timm blocks with qkv bias
    and LayerNorm eps 1e-6, the decoder under MAE's own key names, patches as (row, column, channel)."""

    def __init__(self, dec_dim: int = 32, dec_depth: int = 2, dec_heads: int = 4):
        super().__init__()
        norm = partial(nn.LayerNorm, eps=1e-6)  # as MAE passes it
        self.patch_embed = PatchEmbed(SIZE, PATCH, 3, DIM)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, DIM))
        self.pos_embed = nn.Parameter(torch.zeros(1, L + 1, DIM))
        self.blocks = nn.ModuleList([Block(DIM, HEADS, 4.0, qkv_bias=True, norm_layer=norm)
                                     for _ in range(DEPTH)])
        self.norm = norm(DIM)
        self.decoder_embed = nn.Linear(DIM, dec_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dec_dim))
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, L + 1, dec_dim))
        self.decoder_blocks = nn.ModuleList([Block(dec_dim, dec_heads, 4.0, qkv_bias=True,
                                                   norm_layer=norm) for _ in range(dec_depth)])
        self.decoder_norm = norm(dec_dim)
        self.decoder_pred = nn.Linear(dec_dim, PATCH ** 2 * 3)

    def forward_encoder(self, x, mask_ratio, noise):
        x = self.patch_embed(x) + self.pos_embed[:, 1:]
        n, length, d = x.shape
        ids_shuffle = torch.argsort(noise, dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        keep = int(length * (1 - mask_ratio))
        x = torch.gather(x, 1, ids_shuffle[:, :keep].unsqueeze(-1).repeat(1, 1, d))
        mask = torch.ones(n, length)
        mask[:, :keep] = 0
        mask = torch.gather(mask, 1, ids_restore)
        x = torch.cat([(self.cls_token + self.pos_embed[:, :1]).expand(n, -1, -1), x], dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x), mask, ids_restore

    def forward_decoder(self, x, ids_restore):
        x = self.decoder_embed(x)
        mask_tokens = self.mask_token.repeat(x.shape[0], ids_restore.shape[1] + 1 - x.shape[1], 1)
        x_ = torch.cat([x[:, 1:, :], mask_tokens], dim=1)
        x_ = torch.gather(x_, 1, ids_restore.unsqueeze(-1).repeat(1, 1, x.shape[2]))
        x = torch.cat([x[:, :1, :], x_], dim=1) + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            x = blk(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:, :]

    def forward(self, imgs, mask_ratio, noise):
        latent, mask, ids_restore = self.forward_encoder(imgs, mask_ratio, noise)
        pred = self.forward_decoder(latent, ids_restore)
        h = w = imgs.shape[2] // PATCH
        target = imgs.reshape(imgs.shape[0], 3, h, PATCH, w, PATCH)
        target = torch.einsum("nchpwq->nhwpqc", target).reshape(imgs.shape[0], h * w, PATCH ** 2 * 3)
        mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1.e-6) ** .5
        loss = ((pred - target) ** 2).mean(dim=-1)
        return (loss * mask).sum() / mask.sum(), pred, latent


def test_mae_pth_features_and_loss_equal_maes_own(tmp_path):
    ref = MaeReference()
    randomise(ref)
    ref.eval()
    path = tmp_path / "checkpoint-799.pth"
    torch.save({"model": ref.state_dict(), "epoch": 799, "args": argparse.Namespace(model="mae_vit_tiny")}, path)
    with pytest.raises(BackboneError, match="cannot tell its attention heads .width 48.; set backbone.heads"):
        build_backbone(BackboneConfig(checkpoint=str(path)))
    backbone = build_backbone(BackboneConfig(checkpoint=str(path), heads=HEADS, decoder_heads=4))
    assert backbone.identity["layout"] == "mae-pth" and backbone.decoder_meta["patch_order"] == "hwc"
    assert backbone.decoder_meta["qkv_bias"] and backbone.decoder_meta["norm_eps"] == 1e-6
    x, noise = images(), fixed_noise()
    with torch.no_grad():
        theirs, _, _ = ref.forward_encoder(x, 0.0, torch.arange(L).float().expand(4, L))
        torch.testing.assert_close(backbone.model.forward_features(x), theirs, rtol=1e-5, atol=1e-5)
        loss_ref, _, _ = ref(x, 0.75, noise)
        keep, restore = keep_restore(noise, 0.75)
        loss = mae_task(backbone, decoder="pretrained").masked_loss(x, keep, restore)
    assert math.isclose(float(loss), float(loss_ref), rel_tol=1e-5)
    # a bare state dict, without its decoder: the encoder alone (RETFound's fine-tuning start, DINO's backbones)
    bare = tmp_path / "encoder.pt"
    torch.save({k: v for k, v in ref.state_dict().items() if not k.startswith(("decoder", "mask_token"))}, bare)
    enc = build_backbone(BackboneConfig(checkpoint=str(bare), heads=HEADS))
    assert enc.decoder_state is None and frozen_state_digest(enc.model) == frozen_state_digest(backbone.model)


# ---------------------------------------------------------------- DINO's training checkpoint

class DinoHeadReference(nn.Module):
    """facebookresearch/dino ``vision_transformer.DINOHead`` (nlayers 3, no batch norm) with its weight-normalised
    last layer; ``norm_last_layer=False`` leaves the gain ``g`` free."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int, bottleneck: int, parametrized: bool):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                                 nn.Linear(hidden, bottleneck))
        last = nn.Linear(bottleneck, out_dim, bias=False)
        if parametrized:
            self.last_layer = nn.utils.parametrizations.weight_norm(last)
        else:
            with pytest.warns(FutureWarning):
                self.last_layer = nn.utils.weight_norm(last)

    def forward(self, x):
        return self.last_layer(F.normalize(self.mlp(x), dim=-1, p=2))


@pytest.mark.parametrize("parametrized", [False, True], ids=["weight_g", "parametrizations"])
def test_dino_checkpoint_head_and_centre(tmp_path, parametrized):
    vit = VisionTransformer(img_size=SIZE, patch_size=PATCH, embed_dim=DIM, depth=DEPTH, num_heads=HEADS,
                            num_classes=0)
    head = DinoHeadReference(DIM, 64, 40, 16, parametrized)
    randomise(vit, 3)
    randomise(head, 4)
    center = torch.randn(1, 64)
    teacher = {**{f"backbone.{k}": v for k, v in vit.state_dict().items()},
               **{f"head.{k}": v for k, v in head.state_dict().items()}}
    path = tmp_path / "checkpoint.pth"
    torch.save({"teacher": teacher, "student": {f"module.{k}": v * 0 for k, v in teacher.items()},
                "dino_loss": {"center": center}, "args": argparse.Namespace(arch="vit_tiny")}, path)
    backbone = build_backbone(BackboneConfig(checkpoint=str(path), heads=HEADS))
    assert backbone.identity["layout"] == "dino" and backbone.mean == (0.485, 0.456, 0.406)
    x = images()
    ours_head = DINOHead(DIM, 64, 40, 16, gain=backbone.dino_head.gain)
    ours_head.load_state_dict(backbone.dino_head.state)
    with torch.no_grad():
        feats = backbone.model(x)
        torch.testing.assert_close(feats, vit.eval()(x), rtol=1e-5, atol=1e-5)  # the teacher's, not the student's
        torch.testing.assert_close(ours_head(feats), head(feats), rtol=1e-5, atol=1e-5)
    cfg = PretextConfig(method="dino")
    task = SelfDistillation(backbone, backbone.fresh_model(), cfg)
    assert task.head_source.startswith("pretrained DINO head (DINO teacher head")
    assert torch.equal(task.criterion.center, center) and task.student.head.prototypes.shape == (64, 16)
    with torch.no_grad():
        assert torch.isfinite(task.eval().loss(x, torch.Generator().manual_seed(0)))
    fresh = SelfDistillation(backbone, backbone.fresh_model(), cfg.model_copy(update={"dino": cfg.dino.model_copy(
        update={"head": "fresh"})}))
    assert fresh.head_source == "fresh DINO head" and fresh.student.head.prototypes.shape[0] == cfg.dino.out_dim


# ---------------------------------------------------------------- errors

def test_unsupported_layouts_and_disagreeing_names(tmp_path, vit_mae):
    junk = tmp_path / "junk.pth"
    torch.save({"weights": torch.zeros(3)}, junk)
    with pytest.raises(BackboneError, match=r"junk.pth': unsupported layout \(no timm/MAE ViT keys"):
        build_backbone(BackboneConfig(checkpoint=str(junk)))
    (tmp_path / "x.onnx").write_bytes(b"0")
    with pytest.raises(BackboneError, match="unsupported layout"):
        build_backbone(BackboneConfig(checkpoint=str(tmp_path / "x.onnx")))
    folder, _ = vit_mae
    with pytest.raises(BackboneError, match=r"backbone.name 'vit_small_patch16_224' \(width 384, depth 12, patch 16, "
                       r"224 px\) disagrees with .* \(width 48, depth 2, patch 8, 32 px\)"):
        build_backbone(BackboneConfig(name="vit_small_patch16_224", checkpoint=str(folder)))
    with pytest.raises(BackboneError, match="backbone.decoder_heads 8 disagrees with .*config.json"):
        build_backbone(BackboneConfig(checkpoint=str(folder), decoder_heads=8))
