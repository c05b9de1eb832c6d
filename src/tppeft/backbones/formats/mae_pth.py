"""Pickled state dicts of timm-style ViTs: the layout of facebookresearch/mae (``{"model": state_dict}`` or a
bare state dict; RETFound publishes its weights so), with MAE's decoder when present; the same encoder keys cover
DINO's and DINOv2's backbone-only releases.

MAE's own code predicts each patch as (row, column, channel) with LayerNorm eps 1e-6 everywhere and 16 decoder
heads (not stored: ``backbone.decoder_heads``); the decoder is kept in that order and scored in it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from tppeft.backbones.formats.base import (
    MAE_DECODER_HEADS,
    TIMM_NORM_EPS,
    BackboneWeights,
    DecoderWeights,
    reorder_patch_outputs,
    tensors_only,
    without_prefix,
    zero_qkv_bias,
)
from tppeft.errors import BackboneError

# MAE's decoder keys -> MAEDecoder's
DECODER_NAMES = {"decoder_embed.": "dec_embed.", "mask_token": "mask_token", "decoder_pos_embed": "dec_pos",
                 "decoder_blocks.": "dec_blocks.", "decoder_norm.": "dec_norm.", "decoder_pred.": "dec_pred."}
MAE_PATCH_ORDER = "hwc"


def state_dict_of(obj: dict) -> dict[str, torch.Tensor]:
    """The state dict inside a training checkpoint (``model`` or ``state_dict``), without a DDP ``module.``."""
    for key in ("model", "state_dict"):
        if isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    state = tensors_only(obj)
    if state and all(k.startswith("module.") for k in state):
        state = without_prefix(state, "module.")
    return state


def split_decoder(state: dict[str, torch.Tensor]) -> tuple[dict, dict]:
    """(encoder keys, decoder keys renamed to MAEDecoder's); the decoder is empty when there is none."""
    if "decoder_embed.weight" not in state:
        return state, {}
    encoder, decoder = {}, {}
    for k, v in state.items():
        theirs = next((p for p in DECODER_NAMES if k.startswith(p)), None)
        if theirs is None:
            encoder[k] = v
        else:
            decoder[DECODER_NAMES[theirs] + k[len(theirs):]] = v
    return encoder, decoder


def encoder_only(state: dict[str, torch.Tensor], source: str) -> tuple[dict, str]:
    """timm keys of the encoder (classifier and DINOv2's mask token dropped) and the family they suggest."""
    if any(".mlp.w12." in k for k in state) or "register_tokens" in state:
        raise BackboneError(f"backbone.checkpoint '{source}': a DINOv2 with SwiGLU feed-forward or registers is not "
                            "supported in this layout; use its timm name (backbone.checkpoint=timm:NAME)")
    family = "dinov2" if "mask_token" in state and any(".ls1." in k for k in state) else "mae"
    drop = ("head.", "mask_token", "fc_norm.") if "norm.weight" in state else ("head.", "mask_token")
    return {k: v for k, v in state.items() if not k.startswith(drop)}, family


def read(path: Path, obj: dict, source: str, decoder_heads: int | None = None) -> BackboneWeights:
    state = state_dict_of(obj)
    encoder, decoder = split_decoder(state)
    encoder, family = encoder_only(encoder, source)
    weights = BackboneWeights(layout="mae-pth", family=family, source=source, files=[path], encoder=encoder,
                              norm_eps=TIMM_NORM_EPS)
    if decoder:
        weights.decoder = DecoderWeights(decoder, heads=decoder_heads or MAE_DECODER_HEADS, norm_eps=TIMM_NORM_EPS,
                                         patch_order=MAE_PATCH_ORDER, origin=f"MAE decoder of {path.name}")
    return weights


def write(path: Path, encoder: dict[str, torch.Tensor], decoder: DecoderWeights | None, patch: int) -> Path:
    """``{"model": state_dict}`` in MAE's keys; the decoder predicts in MAE's order and has qkv biases, as MAE's
    decoder blocks do (zero where the source had none)."""
    state = {k: v.detach().cpu().float() for k, v in encoder.items()}
    if decoder is not None:
        dec = zero_qkv_bias(decoder.state, "dec_blocks.")
        for k in ("dec_pred.weight", "dec_pred.bias"):
            dec[k] = reorder_patch_outputs(dec[k], patch, decoder.patch_order, MAE_PATCH_ORDER)
        ours = {v: k for k, v in DECODER_NAMES.items()}
        for k, v in dec.items():
            prefix = next(p for p in ours if k.startswith(p))
            state[ours[prefix] + k[len(prefix):]] = v.detach().cpu().float()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": state}, path)
    return path
