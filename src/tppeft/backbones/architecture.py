"""The timm architecture of a checkpoint: read from its tensors' shapes, named, and checked against a given name.

Image size, patch size, width, depth, MLP ratio, qkv bias, layer scale and register tokens are in the shapes;
the number of attention heads is not: it comes from the checkpoint's config where it has one, else from
``backbone.heads``, else from the timm name (given, or chosen by width from timm's standard ViT sizes).
"""

from __future__ import annotations

import difflib
import math
import re

import timm
import torch

from tppeft.errors import BackboneError

# timm's standard ViTs by width: (name of the size, depth) -> a registered model name (its heads are timm's)
STANDARD = {192: "vit_tiny_patch16_224", 384: "vit_small_patch16_224", 768: "vit_base_patch16_224",
            1024: "vit_large_patch16_224", 1280: "vit_huge_patch14_224", 1408: "vit_giant_patch14_224"}
DINOV2 = {384: "vit_small_patch14_dinov2", 768: "vit_base_patch14_dinov2", 1024: "vit_large_patch14_dinov2",
          1536: "vit_giant_patch14_dinov2"}
DEFAULT_NAME = "vit_tiny_patch16_224"  # without a checkpoint and without a name


def _square(n: int) -> int | None:
    r = math.isqrt(n)
    return r if r * r == n and r > 0 else None


def from_shapes(state: dict[str, torch.Tensor], source: str) -> dict:
    """timm ``VisionTransformer`` keyword arguments read from a state dict in timm keys."""
    proj = state.get("patch_embed.proj.weight")
    pos = state.get("pos_embed")
    if proj is None or proj.ndim != 4 or pos is None or "cls_token" not in state:
        raise BackboneError(f"backbone.checkpoint '{source}': not a ViT with a class token and an absolute position "
                            "embedding (expected patch_embed.proj.weight (D, C, P, P), cls_token and pos_embed)")
    dim, chans, patch = proj.shape[0], proj.shape[1], proj.shape[-1]
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))}
    if not blocks:
        raise BackboneError(f"backbone.checkpoint '{source}': no transformer blocks (blocks.N.*)")
    reg = state["reg_token"].shape[1] if "reg_token" in state else 0
    tokens = pos.shape[1]
    grid, no_embed_class = _square(tokens - 1 - reg), False
    if grid is None:
        grid, no_embed_class = _square(tokens), True
    if grid is None:
        raise BackboneError(f"backbone.checkpoint '{source}': pos_embed has {tokens} positions, not a square grid "
                            f"(plus {1 + reg} prefix tokens)")
    arch = {"img_size": grid * patch, "patch_size": patch, "embed_dim": dim, "depth": max(blocks) + 1,
            "in_chans": chans, "mlp_ratio": state["blocks.0.mlp.fc1.weight"].shape[0] / dim,
            "qkv_bias": "blocks.0.attn.qkv.bias" in state}
    if "blocks.0.ls1.gamma" in state:
        arch["init_values"] = 1e-5  # layer scale present; its values come from the checkpoint
    if reg:
        arch["reg_tokens"] = reg
    if no_embed_class:
        arch["no_embed_class"] = True
    if "norm_pre.weight" in state:
        arch["pre_norm"] = True
    return arch


def _shape_of(name: str) -> dict:
    """What a timm name builds by default (on the meta device: no memory, no init)."""
    with torch.device("meta"):
        m = timm.create_model(name, pretrained=False, num_classes=0)
    return {"img_size": m.patch_embed.img_size[0], "patch_size": m.patch_embed.patch_size[0],
            "embed_dim": m.embed_dim, "depth": len(m.blocks), "num_heads": m.blocks[0].attn.num_heads}


def _text(a: dict) -> str:
    return f"width {a['embed_dim']}, depth {a['depth']}, patch {a['patch_size']}, {a['img_size']} px"


def check_timm_name(name: str) -> None:
    """A name timm does not know is a :class:`BackboneError` naming the closest ViTs timm has."""
    if timm.is_model(name):
        return
    vits = [m for m in timm.list_models("*vit*") if "vit" in m.split("_")[0]]
    close = difflib.get_close_matches(name, vits, n=4, cutoff=0.5)
    hint = f"closest ViT names: {', '.join(close)}" if close else "`timm.list_models('vit*')` lists the ViTs"
    raise BackboneError(f"backbone.name '{name}' is not a timm model ({hint})")


def resolve(name: str | None, arch: dict, num_heads: int | None, source: str, suggested: str | None = None,
            family: str = "") -> tuple[str, dict]:
    """(timm name, keyword arguments) for a checkpoint whose architecture ``arch`` was read from its shapes.

    A given ``name`` must agree with the shapes; without one the checkpoint's own suggestion or timm's standard
    ViT of that width is used. Heads: the checkpoint's ``num_heads`` if it says, else the name's.
    """
    if name is not None:
        check_timm_name(name)
    chosen = name or suggested
    if chosen is None:
        table = DINOV2 if family == "dinov2" else STANDARD
        chosen = table.get(arch["embed_dim"]) or STANDARD.get(arch["embed_dim"]) or "vit_base_patch16_224"
    default = _shape_of(chosen)
    if name is not None:
        keys = ("embed_dim", "depth", "patch_size", "img_size")
        if any(default[k] != arch[k] for k in keys):
            raise BackboneError(f"backbone.name '{name}' ({_text(default)}) disagrees with backbone.checkpoint "
                                f"'{source}' ({_text(arch)}); set backbone.name=null to take the architecture from "
                                "the checkpoint")
    heads = num_heads
    if heads is None:
        heads = default["num_heads"] if default["embed_dim"] == arch["embed_dim"] else arch["embed_dim"] // 64
    if heads < 1 or arch["embed_dim"] % heads:
        raise BackboneError(f"backbone.checkpoint '{source}': cannot tell its attention heads (width "
                            f"{arch['embed_dim']}); set backbone.heads to a divisor of {arch['embed_dim']}")
    return chosen, {**arch, "num_heads": heads}
