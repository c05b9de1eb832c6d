"""Which reader a ``backbone.checkpoint`` needs, chosen by its prefix, its files and its keys."""

from __future__ import annotations

import json
from pathlib import Path

from tppeft.backbones.formats import dino, hf, hub, mae_pth, native
from tppeft.backbones.formats.base import BackboneWeights, torch_load
from tppeft.bundled import resolve
from tppeft.errors import BackboneError

PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
EXPECTED = ("a .safetensors encoder (the tool's layout, b0's), a Hugging Face folder of a vit_mae, vit or dinov2 "
            "model, a timm folder, an MAE / RETFound / DINO .pth, hf-hub:ORG/NAME or timm:NAME")


def unsupported(source: str, why: str) -> BackboneError:
    return BackboneError(f"backbone.checkpoint '{source}': unsupported layout ({why}); expected {EXPECTED}")


def read_path(path: Path, source: str, decoder_heads: int | None = None) -> BackboneWeights:
    """A local file or folder, by what it holds."""
    if path.is_dir():
        config = path / "config.json"
        if hf.is_hf_folder(path):
            return hf.read(path, source, decoder_heads)
        if config.is_file() and "architecture" in json.loads(config.read_text()):
            return hub.read_timm_folder(path, source)
        weights = sorted(p for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES) or sorted(
            path.glob("*_encoder.safetensors"))
        if len(weights) == 1:
            return read_path(weights[0], source, decoder_heads)
        raise unsupported(source, "a folder without config.json and not exactly one weight file")
    if not path.is_file():
        looks_like_name = not path.suffix and len(path.parts) == 1
        hint = f"; a timm model is named as timm:NAME, a Hub repository as {hub.HF_HUB}ORG/NAME" if looks_like_name \
            else ""
        raise BackboneError(f"backbone.checkpoint '{path}' does not exist{hint}")
    if path.suffix == ".safetensors":
        return native.read(path, source, decoder_heads)
    if path.suffix in PICKLE_SUFFIXES:
        obj = torch_load(path)
        if dino.is_dino(obj):
            return dino.read(path, obj, source)
        weights = mae_pth.read(path, obj, source, decoder_heads)
        if "patch_embed.proj.weight" not in weights.encoder:
            keys = sorted(weights.encoder)[:4]
            raise unsupported(source, f"no timm/MAE ViT keys such as patch_embed.proj.weight; found {keys}")
        return weights
    raise unsupported(source, f"a '{path.suffix}' file")


def read(spec: str, decoder_heads: int | None = None) -> BackboneWeights:
    """The checkpoint ``spec`` names: ``bundled:NAME``, ``hf-hub:ORG/NAME``, ``timm:NAME`` or a path."""
    if spec.startswith(hub.HF_HUB):
        return read_path(hub.snapshot(spec[len(hub.HF_HUB):]), spec, decoder_heads)
    if spec.startswith(hub.TIMM):
        return hub.read_timm_name(spec[len(hub.TIMM):], spec)
    return read_path(resolve(spec), spec, decoder_heads)
