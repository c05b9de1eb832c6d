"""Build the frozen backbone a ``backbone`` section names: a timm ViT with the weights of ``backbone.checkpoint``.

The checkpoint's layout is read by :mod:`tppeft.backbones.formats` (the tool's own, Hugging Face folders, MAE /
RETFound / DINO pickles, hub names) into timm keys plus optional pretext heads; :mod:`tppeft.backbones.architecture`
turns its shapes into a timm model. Without a checkpoint, timm's own pretrained weights (``backbone.pretrained``)
or a random initialisation.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import torch
from timm.layers import resample_abs_pos_embed
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from tppeft.backbones import architecture
from tppeft.backbones.config import BackboneConfig
from tppeft.backbones.formats import BackboneWeights, DinoHeadWeights, read
from tppeft.backbones.formats.base import TIMM_NORM_EPS, family_normalisation
from tppeft.backbones.formats.hub import PROXY_VARIABLES, create_timm, hub_offline, hub_reachable
from tppeft.errors import BackboneError

__all__ = ["PROXY_VARIABLES", "Backbone", "BackboneError", "build_backbone", "frozen_state_digest", "hub_offline",
           "hub_reachable"]

_create = create_timm  # the name backbone pre-training imports


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
    dino_head: DinoHeadWeights | None = None
    provenance: dict = field(default_factory=dict)  # layout, family, where normalisation and heads came from
    pool_keys: Path | None = None  # the keys of the images it was pre-trained on (tppeft backbone-pretrain)

    @property
    def embed_dim(self) -> int:
        return self.model.embed_dim

    def fresh_model(self) -> VisionTransformer:
        """An independent copy of the frozen backbone, for one run."""
        return copy.deepcopy(self.model)

    def describe_source(self) -> str:
        """The checkpoint, as error messages name it."""
        ckpt = self.identity.get("checkpoint")
        if ckpt:
            return f"backbone.checkpoint '{ckpt}'"
        return f"the backbone (timm '{self.identity.get('name')}', backbone.checkpoint null)"


def frozen_state_digest(model: torch.nn.Module, exclude: set[str] = frozenset()) -> str:
    """SHA-256 over every parameter and buffer not in ``exclude``: equal digests = bit-identical weights."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        if name in exclude:
            continue
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _set_norm_eps(model: nn.Module, eps: float) -> None:
    """Every LayerNorm's eps (a source's own; timm builds 1e-6)."""
    for m in model.modules():
        if isinstance(m, nn.LayerNorm):
            m.eps = eps


def _load_encoder(model: VisionTransformer, state: dict[str, torch.Tensor], where: str, name: str,
                  kwargs: dict) -> None:
    state = dict(state)
    pos = state.get("pos_embed")
    if pos is not None and pos.shape != model.pos_embed.shape:
        grid = model.patch_embed.grid_size
        state["pos_embed"] = resample_abs_pos_embed(
            pos, new_size=list(grid), num_prefix_tokens=0 if model.no_embed_class else model.num_prefix_tokens)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # tensor shapes differ
        raise BackboneError(f"{where} does not fit timm '{name}' with {kwargs}: {str(e)[:300]}") from None
    if missing or unexpected:
        raise BackboneError(f"{where} does not fit timm '{name}' with {kwargs}: missing {missing[:5]}, "
                            f"unexpected {unexpected[:5]}")


def _architecture(weights: BackboneWeights, cfg: BackboneConfig) -> tuple[str, dict, str]:
    """(timm name, create_model keyword arguments, where the name came from)."""
    if weights.arch_given:  # the tool's own metadata: its arch_kwargs override whatever the name builds
        name = cfg.name or weights.timm_name or architecture.STANDARD.get(weights.arch.get("embed_dim"),
                                                                          architecture.DEFAULT_NAME)
        return name, dict(weights.arch), "backbone.name" if cfg.name else "checkpoint"
    arch = architecture.from_shapes(weights.encoder, weights.source)
    if cfg.heads is not None and weights.num_heads not in (None, cfg.heads):
        raise BackboneError(f"backbone.heads {cfg.heads} disagrees with backbone.checkpoint '{weights.source}' "
                            f"({weights.num_heads} heads); leave backbone.heads null")
    name, kwargs = architecture.resolve(cfg.name, arch, weights.num_heads or cfg.heads, weights.source,
                                        weights.timm_name, weights.family)
    return name, kwargs, "backbone.name" if cfg.name else ("checkpoint" if weights.timm_name else "shapes")


def _from_checkpoint(cfg: BackboneConfig, image_size: int | None) -> Backbone:
    weights = read(cfg.checkpoint, cfg.decoder_heads)
    name, kwargs, name_source = _architecture(weights, cfg)
    if image_size is not None:
        kwargs["img_size"] = image_size
    model = create_timm(name, False, **kwargs)
    if weights.norm_eps != TIMM_NORM_EPS:
        _set_norm_eps(model, weights.norm_eps)
    where = str(weights.files[0]) if weights.files else cfg.checkpoint
    _load_encoder(model, weights.encoder, where, name, kwargs)
    decoder_state, decoder_meta, resampled = None, {}, False
    if weights.decoder is not None:
        weights.decoder.check(cfg.checkpoint)
        decoder_state, decoder_meta = dict(weights.decoder.state), weights.decoder.meta()
        dec_pos = decoder_state.get("dec_pos")
        grid = model.patch_embed.grid_size
        if dec_pos is not None and dec_pos.shape[1] != 1 + grid[0] * grid[1]:  # another input size
            decoder_state["dec_pos"] = resample_abs_pos_embed(dec_pos, new_size=list(grid), num_prefix_tokens=1)
            resampled = True
    if weights.dino_head is not None and weights.dino_head.in_dim != model.num_features:
        raise BackboneError(f"backbone.checkpoint '{cfg.checkpoint}': its DINO head takes {weights.dino_head.in_dim} "
                            f"features, the encoder gives {model.num_features}")
    mean, std = family_normalisation(weights.family)
    norm_source = f"the {weights.family} family's default"
    if weights.mean is not None and weights.std is not None:
        mean, std, norm_source = weights.mean, weights.std, weights.norm_source
    identity = {"name": name, "checkpoint": cfg.checkpoint, "arch_kwargs": kwargs}
    if weights.files:
        identity["sha256"] = weights.sha256()
    _check_digest(cfg, identity.get("sha256"))
    identity["layout"] = weights.layout
    if name_source == "shapes":
        identity["name_source"] = name_source  # a stand-in of that width: the shapes decide, not the name
    if weights.norm_eps != TIMM_NORM_EPS:
        identity["norm_eps"] = weights.norm_eps
    seen = weights.meta.get("sources") or weights.meta.get("pool")  # what it was pre-trained on, if it says
    if seen:
        identity["trained_on"] = seen
    provenance = {"layout": weights.layout, "family": weights.family, "normalisation": norm_source,
                  "mae_decoder": decoder_meta.get("origin") if decoder_state else None,
                  "dino_head": weights.dino_head.origin if weights.dino_head else None, "notes": weights.notes}
    backbone = _finish(model, cfg, mean, std, identity, decoder_state, decoder_meta, resampled, weights.dino_head,
                       provenance)
    if (keys := weights.meta.get("pool_keys")) and weights.files:
        identity["pool_keys"] = keys
        backbone.pool_keys = weights.files[0].parent / keys["file"]
    return backbone


def _check_digest(cfg: BackboneConfig, digest: str | None) -> None:
    """``backbone.sha256``: refuse a checkpoint other than the one the config names by its digest."""
    if cfg.sha256 is None:
        return
    if digest is None:
        raise BackboneError(f"backbone.sha256 is set, but backbone.checkpoint '{cfg.checkpoint}' is read from no "
                            "local file whose digest could be checked; set backbone.sha256: null")
    if not digest.startswith(cfg.sha256):
        raise BackboneError(f"backbone.checkpoint '{cfg.checkpoint}' has SHA-256 {digest[:16]}..., but "
                            f"backbone.sha256 asks for {cfg.sha256[:16]}...: it is another backbone (made again, or "
                            "replaced). Point backbone.checkpoint at the one asked for, or, to run on this one, "
                            "--set backbone.sha256=null (summary.json records the digest used either way)")


def _finish(model: nn.Module, cfg: BackboneConfig, mean: tuple, std: tuple, identity: dict,
            decoder_state: dict | None = None, decoder_meta: dict | None = None, resampled: bool = False,
            dino_head: DinoHeadWeights | None = None, provenance: dict | None = None) -> Backbone:
    if not isinstance(model, VisionTransformer) or model.cls_token is None or model.pos_embed is None:
        raise BackboneError(f"'{identity['name']}' is not a timm VisionTransformer with a class token and absolute "
                            "position embedding, which this version supports")
    model.requires_grad_(False)
    model.eval()
    if cfg.global_pool is not None:
        model.global_pool = cfg.global_pool  # forward_head pools by it: the classifier's and pretext heads' feature
    return Backbone(
        model=model, mean=tuple(cfg.mean or mean), std=tuple(cfg.std or std), image_size=model.patch_embed.img_size[0],
        patch_size=model.patch_embed.patch_size[0], identity=identity, decoder_state=decoder_state,
        decoder_meta=decoder_meta or {}, decoder_resampled=resampled, dino_head=dino_head,
        provenance={**(provenance or {}), "normalisation": "backbone.mean / backbone.std" if cfg.mean or cfg.std
                    else (provenance or {}).get("normalisation")})


def build_backbone(cfg: BackboneConfig, image_size: int | None = None) -> Backbone:
    """Build the frozen backbone that ``cfg`` names, optionally at another input size."""
    if cfg.checkpoint:
        return _dims(_from_checkpoint(cfg, image_size), cfg)
    name = cfg.name or architecture.DEFAULT_NAME
    kwargs = {"img_size": image_size} if image_size is not None else {}
    model = create_timm(name, cfg.pretrained, **kwargs)
    pcfg = getattr(model, "pretrained_cfg", {}) or {}
    mean, std = tuple(pcfg.get("mean", (0.5,) * 3)), tuple(pcfg.get("std", (0.5,) * 3))
    identity = {"name": name, "pretrained": cfg.pretrained, "arch_kwargs": kwargs}
    source = "timm's pretrained_cfg" if cfg.pretrained else "timm's config"
    return _dims(_finish(model, cfg, mean, std, identity,
                   provenance={"layout": "timm" if cfg.pretrained else "random", "family": "timm",
                               "normalisation": source, "mae_decoder": None, "dino_head": None, "notes": []}), cfg)


def _dims(backbone: Backbone, cfg: BackboneConfig) -> Backbone:
    """``backbone.dims: 3``: the 3D ViT made from this 2D one (backbones/vit3d.py); 2 keeps it."""
    if cfg.dims == 3:
        from tppeft.backbones.vit3d import inflate_backbone

        return inflate_backbone(backbone, cfg)
    return backbone
