"""DINO's training checkpoints (facebookresearch/dino ``checkpoint.pth``): ``teacher`` and ``student`` state dicts
(the student under DDP's ``module.``), each a ``backbone.*`` timm-style ViT and a ``head.*`` projection head, and
the loss ``center`` under ``dino_loss``.

The teacher is read (DINO's released backbones are its teacher's), its head with it. DINO's head: a 3-layer MLP,
an L2-normalised bottleneck and a weight-normalised last layer (``last_layer.weight_g`` / ``weight_v``, or
torch's parametrization names ``last_layer.parametrizations.weight.original0`` / ``original1``), which
:class:`tppeft.pretext.heads.DINOHead` computes as cosine logits times the gain ``g`` (1 with DINO's default
``norm_last_layer``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from tppeft.backbones.formats.base import TIMM_NORM_EPS, BackboneWeights, DinoHeadWeights, without_prefix
from tppeft.backbones.formats.mae_pth import encoder_only, state_dict_of

GAIN_KEYS = ("last_layer.weight_g", "last_layer.parametrizations.weight.original0")
DIRECTION_KEYS = ("last_layer.weight_v", "last_layer.parametrizations.weight.original1")
MLP_KEYS = [f"mlp.{i}.{p}" for i in (0, 2, 4) for p in ("weight", "bias")]


def is_dino(obj: dict) -> bool:
    return any(isinstance(obj.get(k), dict) for k in ("teacher", "student"))


def head_weights(head: dict[str, torch.Tensor], center: torch.Tensor | None, origin: str) -> DinoHeadWeights | None:
    """DINO's head as DINOHead weights, or None when it is not DINO's 3-layer head without batch norm."""
    gain = next((head[k] for k in GAIN_KEYS if k in head), None)
    direction = next((head[k] for k in DIRECTION_KEYS if k in head), None)
    extra = {k for k in head if k.startswith("mlp.")} - set(MLP_KEYS)
    if direction is None or any(k not in head for k in MLP_KEYS) or extra:
        return None
    state = {k: head[k] for k in MLP_KEYS} | {"prototypes": direction}
    if gain is not None and not torch.allclose(gain, torch.ones_like(gain)):
        state["gain"] = gain.flatten()
    return DinoHeadWeights(state, center, origin)


def read(path: Path, obj: dict, source: str) -> BackboneWeights:
    which = "teacher" if isinstance(obj.get("teacher"), dict) else "student"
    state = state_dict_of(obj[which])
    encoder, _ = encoder_only(without_prefix(state, "backbone."), source)
    loss = obj.get("dino_loss")
    center = loss.get("center") if isinstance(loss, dict) else None
    weights = BackboneWeights(layout="dino", family="dino", source=source, files=[path], encoder=encoder,
                              norm_eps=TIMM_NORM_EPS)
    head = without_prefix(state, "head.")
    weights.dino_head = head_weights(head, center, f"DINO {which} head of {path.name}") if head else None
    if head and weights.dino_head is None:
        weights.notes.append(f"the {which}'s head is not DINO's 3-layer head without batch norm: left out")
    return weights


def write(path: Path, encoder: dict[str, torch.Tensor], head: DinoHeadWeights) -> Path:
    """A DINO training checkpoint (teacher = student here) with the head's gain as ``weight_g``."""
    def cpu(t: torch.Tensor) -> torch.Tensor:
        return t.detach().cpu().float()

    gain = head.state.get("gain", torch.ones(head.out_dim))
    theirs = {f"head.{k}": cpu(head.state[k]) for k in MLP_KEYS}
    theirs |= {"head.last_layer.weight_g": cpu(gain).reshape(-1, 1),
               "head.last_layer.weight_v": cpu(head.state["prototypes"])}
    teacher = {f"backbone.{k}": cpu(v) for k, v in encoder.items()} | theirs
    center = head.center if head.center is not None else torch.zeros(1, head.out_dim)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"teacher": teacher, "student": {f"module.{k}": v for k, v in teacher.items()},
                "dino_loss": {"center": cpu(center).reshape(1, -1)}, "epoch": 0,
                "args": argparse.Namespace(arch="vit", out_dim=head.out_dim)}, path)
    return path
