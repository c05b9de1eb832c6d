"""The tool's own layout (that of the bundled b0), read and written.

``<stem>_encoder.safetensors`` with timm ``VisionTransformer`` keys; ``<stem>_meta.json`` (``arch_kwargs`` passed
to ``timm.create_model``, optional ``timm_name``, ``mean``/``std``, ``norm_eps``, ``decoder`` and ``dino_head``
descriptions, what the backbone was trained on); optionally ``<stem>_decoder.safetensors`` (an MAE decoder in
:class:`tppeft.pretext.heads.MAEDecoder` keys) and ``<stem>_dino_head.safetensors`` (a DINO head in
:class:`tppeft.pretext.heads.DINOHead` keys, plus its loss ``center``). A file not named
``*_encoder.safetensors`` looks for ``meta.json``, ``decoder.safetensors`` and ``dino_head.safetensors`` beside it;
without metadata the architecture is read from the shapes.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from tppeft.backbones.formats.base import (
    MAE_DECODER_HEADS,
    TIMM_NORM_EPS,
    BackboneWeights,
    DecoderWeights,
    DinoHeadWeights,
    tensors_only,
)
from tppeft.errors import BackboneError
from tppeft.io import save_tensors, write_json

DECODER_KEYS = "dec_embed, mask_token, dec_pos, dec_blocks.*, dec_norm, dec_pred"


def companion_files(ckpt: Path) -> tuple[Path, Path, Path]:
    """The metadata, decoder and DINO-head files that belong to encoder file ``ckpt``."""
    stem = ckpt.name.removesuffix(".safetensors")
    if stem.endswith("_encoder"):
        prefix = stem.removesuffix("_encoder")
        return (ckpt.with_name(f"{prefix}_meta.json"), ckpt.with_name(f"{prefix}_decoder.safetensors"),
                ckpt.with_name(f"{prefix}_dino_head.safetensors"))
    return ckpt.with_name("meta.json"), ckpt.with_name("decoder.safetensors"), ckpt.with_name("dino_head.safetensors")


def _load(path: Path) -> dict[str, torch.Tensor]:
    try:
        return tensors_only(load_file(path))
    except Exception as e:
        raise BackboneError(f"{path}: cannot read safetensors ({e})") from None


def read(ckpt: Path, source: str, decoder_heads: int | None = None) -> BackboneWeights:
    """An encoder file of the tool's layout with whatever lies beside it."""
    meta_path, dec_path, dino_path = companion_files(ckpt)
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    weights = BackboneWeights(
        layout="tppeft" if meta else "timm-state", family="tppeft", source=source, files=[ckpt],
        encoder=_load(ckpt), arch=dict(meta.get("arch_kwargs", {})), arch_given="arch_kwargs" in meta,
        timm_name=meta.get("timm_name"), norm_eps=meta.get("norm_eps", TIMM_NORM_EPS),
        mean=tuple(meta["mean"]) if "mean" in meta else None, std=tuple(meta["std"]) if "std" in meta else None,
        norm_source=meta_path.name if "mean" in meta else "", meta=meta)
    if dec_path.is_file():
        d = meta.get("decoder", {})
        weights.decoder = DecoderWeights(
            _load(dec_path), heads=d.get("heads") or decoder_heads or MAE_DECODER_HEADS,
            norm_eps=d.get("norm_eps"), patch_order=d.get("patch_order", "chw"),
            origin=d.get("origin") or dec_path.name, norm_pix_loss=d.get("norm_pix_loss"))
    if dino_path.is_file():
        state = _load(dino_path)
        center = state.pop("center", None)
        weights.dino_head = DinoHeadWeights(state, center, origin=meta.get("dino_head", {}).get("origin")
                                            or dino_path.name)
    return weights


def write(out_dir: Path, stem: str, encoder: dict[str, torch.Tensor], meta: dict,
          decoder: DecoderWeights | None = None, dino_head: DinoHeadWeights | None = None) -> list[Path]:
    """Write a checkpoint in this layout (float32); returns the files written, the encoder first."""
    def save(state: dict[str, torch.Tensor], path: Path) -> Path:
        save_tensors({k: v.detach().to("cpu", torch.float32).contiguous() for k, v in state.items()}, path)
        return path

    out_dir.mkdir(parents=True, exist_ok=True)
    files = [save(encoder, out_dir / f"{stem}_encoder.safetensors")]
    meta = dict(meta)
    if decoder is not None:
        meta["decoder"] = {**decoder.meta(), "keys": DECODER_KEYS}
        files.append(save(decoder.state, out_dir / f"{stem}_decoder.safetensors"))
    if dino_head is not None:
        meta["dino_head"] = {"out_dim": dino_head.out_dim, "hidden_dim": dino_head.hidden_dim,
                             "bottleneck_dim": dino_head.bottleneck_dim, "origin": dino_head.origin}
        state = dict(dino_head.state)
        if dino_head.center is not None:
            state["center"] = dino_head.center
        files.append(save(state, out_dir / f"{stem}_dino_head.safetensors"))
    write_json(out_dir / f"{stem}_meta.json", meta)
    files.append(out_dir / f"{stem}_meta.json")
    return files
