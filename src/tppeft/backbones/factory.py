"""Build a backbone from a timm model name plus a local checkpoint (safetensors + metadata JSON).

Checkpoint layout (that of the bundled ``b0``): ``<stem>_encoder.safetensors`` with timm
``VisionTransformer`` keys, ``<stem>_meta.json`` (``arch_kwargs`` passed to ``timm.create_model``,
optional ``mean``/``std``, optional ``decoder`` description) and optionally ``<stem>_decoder.safetensors``
holding an MAE decoder. A file not named ``*_encoder.safetensors`` looks for ``meta.json`` beside it.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import timm
import torch
from safetensors.torch import load_file
from timm.layers import resample_abs_pos_embed
from timm.models.vision_transformer import VisionTransformer

from tppeft.backbones.config import BackboneConfig
from tppeft.bundled import resolve
from tppeft.io import file_sha256

# The convention of checkpoints made by MAE on [0, 1] images (b0's): (x - 0.5) / 0.5.
DEFAULT_LOCAL_MEAN = (0.5, 0.5, 0.5)
DEFAULT_LOCAL_STD = (0.5, 0.5, 0.5)


class BackboneError(ValueError):
    """A backbone that cannot be built; the message says why and what to use instead."""


@dataclass
class Backbone:
    """A frozen ViT plus what callers need to feed it and to pre-train on top of it."""

    model: VisionTransformer
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    image_size: int
    patch_size: int
    identity: dict
    decoder_state: dict[str, torch.Tensor] | None = None
    decoder_meta: dict = field(default_factory=dict)
    decoder_resampled: bool = False  # the decoder's position table was resampled to another input size

    @property
    def embed_dim(self) -> int:
        return self.model.embed_dim

    def fresh_model(self) -> VisionTransformer:
        """An independent copy of the frozen backbone, for one run."""
        return copy.deepcopy(self.model)


def frozen_state_digest(model: torch.nn.Module, exclude: set[str] = frozenset()) -> str:
    """SHA-256 over every parameter and buffer not in ``exclude``: equal digests = bit-identical weights."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        if name in exclude:
            continue
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def seen_splits(identity: dict, data_file: Path) -> list[str]:
    """Splits of ``data_file`` that the backbone saw in pre-training, by file checksum (from the metadata that
    ``tppeft backbone-pretrain`` writes; older checkpoints that list names only are not matched)."""
    sources = [s for s in identity.get("trained_on") or [] if isinstance(s, dict) and s.get("sha256")]
    if not sources or not Path(data_file).is_file():
        return []
    digest = file_sha256(Path(data_file))
    return sorted({split for s in sources if s["sha256"] == digest for split in s.get("splits", {})})


def _meta_for(ckpt: Path) -> tuple[dict, Path | None]:
    stem = ckpt.name.removesuffix(".safetensors")
    if stem.endswith("_encoder"):
        prefix = stem.removesuffix("_encoder")
        meta_path, dec_path = ckpt.with_name(f"{prefix}_meta.json"), ckpt.with_name(f"{prefix}_decoder.safetensors")
    else:
        meta_path, dec_path = ckpt.with_name("meta.json"), ckpt.with_name("decoder.safetensors")
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    return meta, dec_path if dec_path.is_file() else None


PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face Hub's host answers a TCP connection within ``timeout`` seconds.

    Behind a proxy (a ``*_PROXY`` variable set) there is nothing to probe directly: assumed reachable.
    """
    from huggingface_hub import constants

    if any(os.environ.get(v) for v in PROXY_VARIABLES):
        return True
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout).close()
    except OSError:
        return False
    return True


@contextlib.contextmanager
def hub_offline() -> Iterator[None]:
    """huggingface_hub's offline mode (``HF_HUB_OFFLINE``) within the block: weights come from the local cache
    or the call fails at once, instead of retrying an unreachable host for about a minute."""
    from huggingface_hub import constants

    before, constants.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE, True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def _create(name: str, pretrained: bool, **kwargs) -> torch.nn.Module:
    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('_')[0]}*")[:8]
        raise BackboneError(f"backbone.name '{name}' is not a timm model; similar names: {close}")
    offline = pretrained and not hub_reachable()
    try:
        with hub_offline() if offline else contextlib.nullcontext():
            return timm.create_model(name, pretrained=pretrained, num_classes=0, **kwargs)
    except Exception as e:  # hub download errors come in many types
        if not pretrained:
            raise BackboneError(f"cannot build timm model '{name}' with {kwargs}: {e}") from None
        why = ("the Hugging Face Hub is unreachable and the weights are not in the local hub cache"
               if offline else f"{type(e).__name__}: {e}")
        raise BackboneError(
            f"cannot load timm's pretrained weights for '{name}' ({why}). Use a local checkpoint instead: "
            "--set backbone.pretrained=false --set backbone.checkpoint=PATH/TO/encoder.safetensors "
            "(or the bundled reference, backbone.checkpoint=bundled:b0)"
        ) from None


def build_backbone(cfg: BackboneConfig, image_size: int | None = None) -> Backbone:
    """Build the frozen backbone that ``cfg`` names, optionally at another input size."""
    meta: dict = {}
    decoder_state = None
    decoder_resampled = False
    if cfg.checkpoint:
        ckpt = resolve(cfg.checkpoint)
        if not ckpt.is_file():
            raise BackboneError(f"backbone.checkpoint '{ckpt}' does not exist")
        meta, dec_path = _meta_for(ckpt)
        arch = dict(meta.get("arch_kwargs", {}))
        if image_size is not None:
            arch["img_size"] = image_size
        model = _create(cfg.name, False, **arch)
        try:
            state = {k: v.float() for k, v in load_file(ckpt).items()}
        except Exception as e:
            raise BackboneError(f"{ckpt}: cannot read safetensors ({e})") from None
        pos = state.get("pos_embed")
        if pos is not None and pos.shape != model.pos_embed.shape:
            grid = model.patch_embed.grid_size
            state["pos_embed"] = resample_abs_pos_embed(
                pos, new_size=list(grid), num_prefix_tokens=0 if model.no_embed_class else model.num_prefix_tokens)
        try:
            missing, unexpected = model.load_state_dict(state, strict=False)
        except RuntimeError as e:  # tensor shapes differ
            raise BackboneError(f"{ckpt} does not fit timm '{cfg.name}' with {arch}: {str(e)[:300]}") from None
        if missing or unexpected:
            raise BackboneError(f"{ckpt} does not fit timm '{cfg.name}' with {arch}: missing {missing[:5]}, "
                                f"unexpected {unexpected[:5]}")
        if dec_path is not None:
            decoder_state = {k: v.float() for k, v in load_file(dec_path).items()}
            dec_pos = decoder_state.get("dec_pos")
            grid = model.patch_embed.grid_size
            if dec_pos is not None and dec_pos.shape[1] != 1 + grid[0] * grid[1]:  # another input size
                decoder_state["dec_pos"] = resample_abs_pos_embed(dec_pos, new_size=list(grid), num_prefix_tokens=1)
                decoder_resampled = True
        mean = tuple(meta.get("mean", DEFAULT_LOCAL_MEAN))
        std = tuple(meta.get("std", DEFAULT_LOCAL_STD))
        identity = {"name": cfg.name, "checkpoint": cfg.checkpoint, "sha256": file_sha256(ckpt),
                    "arch_kwargs": arch}
        seen = meta.get("sources") or meta.get("pool")  # what the checkpoint was pre-trained on, if it says
        if seen:
            identity["trained_on"] = seen
    else:
        kwargs = {"img_size": image_size} if image_size is not None else {}
        model = _create(cfg.name, cfg.pretrained, **kwargs)
        pcfg = getattr(model, "pretrained_cfg", {}) or {}
        mean, std = tuple(pcfg.get("mean", (0.5,) * 3)), tuple(pcfg.get("std", (0.5,) * 3))
        identity = {"name": cfg.name, "pretrained": cfg.pretrained, "arch_kwargs": kwargs}
    if not isinstance(model, VisionTransformer) or model.cls_token is None or model.pos_embed is None:
        raise BackboneError(f"'{cfg.name}' is not a timm VisionTransformer with a class token and absolute "
                            "position embedding, which this version supports")
    if cfg.mean is not None:
        mean = cfg.mean
    if cfg.std is not None:
        std = cfg.std
    model.requires_grad_(False)
    model.eval()
    backbone = Backbone(
        model=model, mean=mean, std=std, image_size=model.patch_embed.img_size[0],
        patch_size=model.patch_embed.patch_size[0], identity=identity,
        decoder_state=decoder_state, decoder_meta=meta.get("decoder", {}) if decoder_state else {},
        decoder_resampled=decoder_resampled,
    )
    if cfg.dims == 3:  # the 3D ViT made from this 2D one (backbones/vit3d.py)
        from tppeft.backbones.vit3d import inflate_backbone

        return inflate_backbone(backbone, cfg)
    return backbone
