"""Local Hugging Face transformers folders (``config.json`` + weights) of ``vit_mae`` (``ViTMAEForPreTraining``:
encoder and decoder), ``vit`` and ``dinov2`` models (encoder only).

The folder is read by transformers' own classes (``from_pretrained``), which rename older checkpoint keys
(``encoder.layer.N.attention.attention.query``, ...) to the current modules; the mapping below goes from those
modules (transformers >= 5 names) to timm's ``VisionTransformer`` and to :class:`MAEDecoder`. It carries the
config's ``layer_norm_eps`` (1e-12 in Google's and Facebook's configs; timm uses 1e-6) and the decoder's
(row, column, channel) patch order, so the mapped model computes what the source model computes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from tppeft.backbones.formats.base import (
    BackboneWeights,
    DecoderWeights,
    family_normalisation,
    reorder_patch_outputs,
    without_prefix,
    zero_qkv_bias,
)
from tppeft.errors import BackboneError

FAMILIES = {"vit_mae": "mae", "vit": "vit", "dinov2": "dinov2"}
HF_PATCH_ORDER = "hwc"  # ViTMAEForPreTraining.patchify: (row, column, channel)
EMBEDDINGS = {"cls_token": "embeddings.cls_token", "pos_embed": "embeddings.position_embeddings",
              "patch_embed.proj.weight": "embeddings.patch_embeddings.projection.weight",
              "patch_embed.proj.bias": "embeddings.patch_embeddings.projection.bias",
              "norm.weight": "layernorm.weight", "norm.bias": "layernorm.bias"}
LAYERS = {"vit_mae": "layers.", "vit": "layers.", "dinov2": "encoder.layer."}
# timm Block module -> transformers layer module
BLOCK = {"norm1": "layernorm_before", "norm2": "layernorm_after", "attn.proj": "attention.o_proj",
         "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"}
DINOV2_BLOCK = {"norm1": "norm1", "norm2": "norm2", "attn.proj": "attention.o_proj", "mlp.fc1": "mlp.fc1",
                "mlp.fc2": "mlp.fc2", "ls1": "layer_scale1", "ls2": "layer_scale2"}
PARAMS = {"weight": "weight", "bias": "bias", "gamma": "lambda1"}
QKV = ("attention.q_proj", "attention.k_proj", "attention.v_proj")
DECODER = {"dec_embed.weight": "decoder_embed.weight", "dec_embed.bias": "decoder_embed.bias",
           "mask_token": "mask_token", "dec_pos": "decoder_pos_embed", "dec_norm.weight": "decoder_norm.weight",
           "dec_norm.bias": "decoder_norm.bias", "dec_pred.weight": "decoder_pred.weight",
           "dec_pred.bias": "decoder_pred.bias"}


def is_hf_folder(folder: Path) -> bool:
    config = folder / "config.json"
    return config.is_file() and "model_type" in json.loads(config.read_text())


def _layers(state: dict[str, torch.Tensor], prefix: str) -> dict[int, dict[str, torch.Tensor]]:
    out: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in state.items():
        if m := re.match(rf"{re.escape(prefix)}(\d+)\.(.+)", k):
            out.setdefault(int(m.group(1)), {})[m.group(2)] = v
    return out


def block_to_timm(layer: dict[str, torch.Tensor], names: dict[str, str]) -> dict[str, torch.Tensor]:
    """One transformers layer's tensors as a timm ``Block``'s: q, k, v fused into ``qkv``."""
    out = {f"{ours}.{p}": layer[f"{theirs}.{q}"] for ours, theirs in names.items() for p, q in PARAMS.items()
           if f"{theirs}.{q}" in layer}
    for p in ("weight", "bias"):
        parts = [layer.get(f"{name}.{p}") for name in QKV]
        if all(t is not None for t in parts):
            out[f"attn.qkv.{p}"] = torch.cat(parts)
    return out


def block_from_timm(block: dict[str, torch.Tensor], names: dict[str, str]) -> dict[str, torch.Tensor]:
    """The inverse of :func:`block_to_timm`."""
    out = {f"{theirs}.{q}": block[f"{ours}.{p}"] for ours, theirs in names.items() for p, q in PARAMS.items()
           if f"{ours}.{p}" in block}
    for p in ("weight", "bias"):
        if f"attn.qkv.{p}" in block:
            out.update({f"{name}.{p}": t for name, t in zip(QKV, block[f"attn.qkv.{p}"].chunk(3), strict=True)})
    return out


def encoder_to_timm(state: dict[str, torch.Tensor], model_type: str) -> dict[str, torch.Tensor]:
    """A transformers ViT / ViTMAE / Dinov2 base model's state dict in timm keys (the mask token dropped)."""
    out = {ours: state[theirs] for ours, theirs in EMBEDDINGS.items() if theirs in state}
    names = DINOV2_BLOCK if model_type == "dinov2" else BLOCK
    for i, layer in _layers(state, LAYERS[model_type]).items():
        out.update({f"blocks.{i}.{k}": v for k, v in block_to_timm(layer, names).items()})
    return out


def decoder_to_ours(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``ViTMAEDecoder``'s state dict in :class:`MAEDecoder` keys (same predictions, same patch order)."""
    out = {ours: state[theirs] for ours, theirs in DECODER.items()}
    for i, layer in _layers(state, "decoder_layers.").items():
        out.update({f"dec_blocks.{i}.{k}": v for k, v in block_to_timm(layer, BLOCK).items()})
    return out


def _model_class(model_type: str):
    import transformers

    if int(transformers.__version__.split(".")[0]) < 5:
        raise BackboneError(f"reading Hugging Face folders needs transformers >= 5 (installed "
                            f"{transformers.__version__}): pip install -U 'transformers>=5'")
    from transformers import Dinov2Model, ViTMAEForPreTraining, ViTModel

    return {"vit_mae": ViTMAEForPreTraining, "vit": ViTModel, "dinov2": Dinov2Model}[model_type]


def _check_config(config: dict, source: str) -> None:
    if config.get("hidden_act", "gelu") != "gelu":
        raise BackboneError(f"backbone.checkpoint '{source}': hidden_act '{config['hidden_act']}' is not supported "
                            "(timm's ViT uses exact GELU, hidden_act 'gelu')")
    if config.get("use_swiglu_ffn"):
        raise BackboneError(f"backbone.checkpoint '{source}': a DINOv2 with SwiGLU feed-forward (ViT-g) is not "
                            "supported here; use its timm name (backbone.checkpoint=timm:vit_giant_patch14_dinov2)")


def _normalisation(folder: Path, family: str) -> tuple[tuple, tuple, str]:
    pre = folder / "preprocessor_config.json"
    if pre.is_file():
        cfg = json.loads(pre.read_text())
        if "image_mean" in cfg and "image_std" in cfg:
            return tuple(cfg["image_mean"]), tuple(cfg["image_std"]), "preprocessor_config.json"
    mean, std = family_normalisation(family)
    return mean, std, f"the {family} family's default"


def read(folder: Path, source: str, decoder_heads: int | None = None) -> BackboneWeights:
    """Load the folder with transformers' class for its ``model_type`` and map it onto timm / MAEDecoder."""
    config = json.loads((folder / "config.json").read_text())
    model_type = config.get("model_type")
    if model_type not in FAMILIES:
        raise BackboneError(f"backbone.checkpoint '{source}': Hugging Face model_type '{model_type}' is not "
                            f"supported; expected one of {sorted(FAMILIES)} (a ViT with a class token)")
    _check_config(config, source)
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()  # unused-weight notices (a classifier, a pooler) are expected here
    hf_logging.disable_progress_bar()
    try:
        kwargs = {"add_pooling_layer": False} if model_type == "vit" else {}
        model, info = _model_class(model_type).from_pretrained(folder, output_loading_info=True, dtype=torch.float32,
                                                               **kwargs)
    except BackboneError:
        raise
    except Exception as e:  # transformers raises many kinds
        raise BackboneError(f"backbone.checkpoint '{source}': transformers cannot load it "
                            f"({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})") from None
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
    state = {k: v.detach().float() for k, v in model.state_dict().items()}
    missing = [k for k in info.get("missing_keys", []) if not k.startswith("decoder.")]
    if missing:
        raise BackboneError(f"backbone.checkpoint '{source}': its weights lack {missing[:3]} of the "
                            f"{type(model).__name__} its config.json describes")
    base = without_prefix(state, "vit.") if model_type == "vit_mae" else state
    family = FAMILIES[model_type]
    mean, std, norm_source = _normalisation(folder, family)
    weights = BackboneWeights(
        layout=f"hf:{model_type}", family=family, source=source, files=sorted(folder.glob("*.safetensors"))
        or sorted(folder.glob("*.bin")), encoder=encoder_to_timm(base, model_type),
        num_heads=config.get("num_attention_heads"), norm_eps=config.get("layer_norm_eps", 1e-12),
        mean=mean, std=std, norm_source=norm_source)
    has_decoder = model_type == "vit_mae" and not any(k.startswith("decoder.") for k in info.get("missing_keys", []))
    if has_decoder:
        heads = config.get("decoder_num_attention_heads", 16)
        if decoder_heads is not None and decoder_heads != heads:
            raise BackboneError(f"backbone.decoder_heads {decoder_heads} disagrees with {folder / 'config.json'} "
                                f"(decoder_num_attention_heads {heads}); leave backbone.decoder_heads null")
        weights.decoder = DecoderWeights(decoder_to_ours(without_prefix(state, "decoder.")), heads=heads,
                                         norm_eps=weights.norm_eps, patch_order=HF_PATCH_ORDER,
                                         origin="Hugging Face ViTMAEForPreTraining decoder",
                                         norm_pix_loss=config.get("norm_pix_loss"))
    elif model_type == "vit_mae":
        weights.notes.append("the ViTMAE folder holds no decoder weights (a ViTMAEModel): encoder only")
    return weights


def write_vit_mae(folder: Path, encoder: dict[str, torch.Tensor], num_heads: int, decoder: DecoderWeights | None,
                  norm_eps: float, mean: tuple, std: tuple) -> Path:
    """A ViTMAE folder written by transformers itself (``save_pretrained``): ``ViTMAEForPreTraining`` with a
    decoder, ``ViTMAEModel`` without. One ``layer_norm_eps`` and one ``qkv_bias`` serve encoder and decoder in
    transformers' ViTMAE; missing qkv biases are written as zeros, and the decoder predicts in HF's order."""
    from transformers import ViTMAEConfig, ViTMAEForPreTraining, ViTMAEModel

    proj = encoder["patch_embed.proj.weight"]
    dim, channels, patch = proj.shape[0], proj.shape[1], proj.shape[-1]
    grid = round((encoder["pos_embed"].shape[1] - 1) ** 0.5)
    depth = len(_layers(encoder, "blocks."))
    dec = {}
    if decoder is not None:
        dec = dict(decoder.state)
        for k in ("dec_pred.weight", "dec_pred.bias"):
            dec[k] = reorder_patch_outputs(dec[k], patch, decoder.patch_order, HF_PATCH_ORDER)
        dec = zero_qkv_bias(dec, "dec_blocks.")
    enc = zero_qkv_bias(encoder, "blocks.")
    config = ViTMAEConfig(
        hidden_size=dim, num_hidden_layers=depth, num_attention_heads=num_heads,
        intermediate_size=encoder["blocks.0.mlp.fc1.weight"].shape[0], image_size=grid * patch, patch_size=patch,
        num_channels=channels, qkv_bias=True, layer_norm_eps=norm_eps, hidden_act="gelu",
        norm_pix_loss=True if decoder is None or decoder.norm_pix_loss is None else decoder.norm_pix_loss,
        decoder_hidden_size=decoder.dim if decoder else 512, decoder_num_hidden_layers=decoder.depth if decoder else 8,
        decoder_num_attention_heads=decoder.heads if decoder else 16,
        decoder_intermediate_size=dec["dec_blocks.0.mlp.fc1.weight"].shape[0] if decoder else 2048)
    state = {theirs: enc[ours] for ours, theirs in EMBEDDINGS.items()}
    for i, block in _layers(enc, "blocks.").items():
        state.update({f"layers.{i}.{k}": v for k, v in block_from_timm(block, BLOCK).items()})
    if decoder is None:
        model = ViTMAEModel(config)
    else:
        model = ViTMAEForPreTraining(config)
        state = {f"vit.{k}": v for k, v in state.items()}
        state.update({f"decoder.{theirs}": dec[ours] for ours, theirs in DECODER.items()})
        for i, block in _layers(dec, "dec_blocks.").items():
            state.update({f"decoder.decoder_layers.{i}.{k}": v for k, v in block_from_timm(block, BLOCK).items()})
    model.load_state_dict(state, strict=True)
    model.save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps(
        {"image_processor_type": "ViTImageProcessor", "image_mean": list(mean), "image_std": list(std),
         "size": {"height": grid * patch, "width": grid * patch}}, indent=2))
    return folder
