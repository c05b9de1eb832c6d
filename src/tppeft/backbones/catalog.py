"""``tppeft backbone info`` (what a checkpoint holds, as the tool reads it) and ``tppeft backbone import`` (the
checkpoint written in the tool's own layout, heads included, so that later runs read it without the source's
library or the network)."""

from __future__ import annotations

import shutil
from pathlib import Path

from tppeft.backbones.config import BackboneConfig
from tppeft.backbones.factory import Backbone, build_backbone
from tppeft.backbones.formats import native
from tppeft.backbones.formats.base import TIMM_NORM_EPS, DecoderWeights
from tppeft.backbones.seen import keys_text, pool_text
from tppeft.rundir import OutputError

PATCH_ORDER_TEXT = {"chw": "(channel, row, column)", "hwc": "(row, column, channel)"}
PIXELS_TEXT = {True: "per-patch normalised pixels", False: "raw pixels", None: "pixels it does not record"}


def _eps_text(eps: float | None) -> str:
    return "1e-06 in the blocks, 1e-05 at the end (b0's)" if eps is None else f"{eps:g}"


def _count(state: dict | None) -> int:
    return sum(t.numel() for t in (state or {}).values())


def info(backbone: Backbone) -> dict[str, str]:
    """What the checkpoint holds, one line per aspect, in the order printed."""
    ident, prov, vit = backbone.identity, backbone.provenance, backbone.model
    kwargs = {k: v for k, v in ident.get("arch_kwargs", {}).items() if k not in ("img_size", "patch_size")}
    grid = vit.patch_embed.grid_size
    name_note = {"shapes": " (timm's standard ViT of that width; the shapes decide)"}.get(ident.get("name_source"), "")
    lines = {
        "source": str(ident.get("checkpoint") or f"timm {ident['name']}"),
        "layout": f"{prov.get('layout')} (family {prov.get('family')})",
        "architecture": f"timm {ident['name']}{name_note} {kwargs}",
        "input": f"{backbone.image_size} px, patch {backbone.patch_size} ({grid[0]} x {grid[1]} patches + "
                 f"{vit.num_prefix_tokens} prefix token{'s' if vit.num_prefix_tokens > 1 else ''}); LayerNorm eps "
                 f"{ident.get('norm_eps', TIMM_NORM_EPS):g}",
        "normalisation": f"mean {tuple(round(x, 4) for x in backbone.mean)}, std "
                         f"{tuple(round(x, 4) for x in backbone.std)} from {prov.get('normalisation')}",
    }
    m = backbone.decoder_meta
    lines["MAE decoder"] = (
        f"width {m['dim']}, depth {m['depth']}, {m['heads']} heads, mlp ratio {m['mlp_ratio']:g}, "
        f"{'with' if m['qkv_bias'] else 'no'} qkv bias, LayerNorm eps {_eps_text(m['norm_eps'])}, patches ordered "
        f"{PATCH_ORDER_TEXT[m['patch_order']]}, trained on {PIXELS_TEXT[m['norm_pix_loss']]}; "
        f"{_count(backbone.decoder_state):,} parameters ({m['origin']})"
        if backbone.decoder_state else "none")
    h = backbone.dino_head
    lines["DINO head"] = (
        f"{h.in_dim} -> {h.hidden_dim} -> {h.hidden_dim} -> {h.bottleneck_dim}, {h.out_dim} prototypes"
        f"{', trained gains' if h.gain else ''}{', loss centre' if h.center is not None else ''}; "
        f"{_count(h.state):,} parameters ({h.origin})" if h else "none")
    lines["parameters"] = f"encoder {sum(p.numel() for p in vit.parameters()):,}"
    if ident.get("sha256"):
        lines["sha256"] = ident["sha256"]
    lines["trained on"] = pool_text(ident["trained_on"]) if ident.get("trained_on") else "not recorded"
    if ident.get("pool_keys"):
        lines["pool keys"] = keys_text(ident["pool_keys"]) + ("" if backbone.pool_keys and backbone.pool_keys.is_file()
                                                             else " (the file is missing)")
    for i, note in enumerate(prov.get("notes") or []):
        lines[f"note {i + 1}"] = note
    return lines


def info_text(lines: dict[str, str]) -> str:
    width = max(len(k) for k in lines)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in lines.items())


def import_backbone(cfg: BackboneConfig, out: Path, stem: str = "backbone", overwrite: bool = False) -> list[Path]:
    """Read ``cfg.checkpoint`` and write it into ``out`` in the tool's own layout; returns the files written.
    Everything is read and checked before ``out`` is touched."""
    backbone = build_backbone(cfg)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not overwrite:
            raise OutputError(f"output folder '{out}' is not empty; pass --overwrite or choose another --output")
        if not out.is_dir() or not any(out.glob("*_meta.json")):
            raise OutputError(f"output folder '{out}' holds no imported backbone (*_meta.json); refusing to "
                              "replace it even with --overwrite")
        shutil.rmtree(out)
    ident = backbone.identity
    meta = {"arch": "timm.models.vision_transformer.VisionTransformer", "timm_name": ident["name"],
            "arch_kwargs": ident["arch_kwargs"], "mean": list(backbone.mean), "std": list(backbone.std),
            "imported_from": {"checkpoint": ident.get("checkpoint"), "layout": backbone.provenance.get("layout"),
                              "family": backbone.provenance.get("family"), "sha256": ident.get("sha256"),
                              "normalisation": backbone.provenance.get("normalisation")}}
    if "norm_eps" in ident:
        meta["norm_eps"] = ident["norm_eps"]
    if ident.get("trained_on"):
        meta["sources"] = ident["trained_on"]
    keys = backbone.pool_keys if backbone.pool_keys and backbone.pool_keys.is_file() else None
    if keys:  # the keys of its pre-training images travel with it, so runs still count the images it saw
        meta["pool_keys"] = {**ident["pool_keys"], "file": f"{stem}_pool_keys.bin"}
    decoder = None
    if backbone.decoder_state:
        m = backbone.decoder_meta
        decoder = DecoderWeights(backbone.decoder_state, heads=m["heads"], norm_eps=m["norm_eps"],
                                 patch_order=m["patch_order"], origin=m["origin"], norm_pix_loss=m["norm_pix_loss"])
    files = native.write(out, stem, backbone.model.state_dict(), meta, decoder, backbone.dino_head)
    if keys:
        files.append(Path(shutil.copyfile(keys, out / meta["pool_keys"]["file"])))
    return files


def write_foreign(backbone: Backbone, layout: str, out: Path) -> Path:
    """``backbone`` (with its MAE decoder) in a foreign layout: ``hf:vit_mae`` (a transformers folder, as
    transformers writes it) or ``mae-pth`` (MAE's ``{"model": state_dict}``). What the layout cannot hold is said
    by its writer (one LayerNorm eps for all of ViTMAE; MAE's decoder heads are not stored)."""
    from tppeft.backbones.formats import hf, mae_pth

    decoder = None
    if backbone.decoder_state:
        m = backbone.decoder_meta
        decoder = DecoderWeights(backbone.decoder_state, heads=m["heads"], norm_eps=m["norm_eps"],
                                 patch_order=m["patch_order"], origin=m["origin"], norm_pix_loss=m["norm_pix_loss"])
    encoder = backbone.model.state_dict()
    eps = backbone.identity.get("norm_eps", TIMM_NORM_EPS)
    if layout == "hf:vit_mae":
        heads = backbone.model.blocks[0].attn.num_heads
        return hf.write_vit_mae(Path(out), encoder, heads, decoder, eps, backbone.mean, backbone.std)
    if layout == "mae-pth":
        return mae_pth.write(Path(out), encoder, decoder, backbone.patch_size)
    raise ValueError(f"cannot write layout '{layout}'; writable: hf:vit_mae, mae-pth")
