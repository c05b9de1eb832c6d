"""What every checkpoint reader returns: a checkpoint in the tool's own terms.

A reader turns one foreign layout into timm ``VisionTransformer`` keys for the encoder, the keys of
:class:`tppeft.pretext.heads.MAEDecoder` for an MAE decoder and those of :class:`tppeft.pretext.heads.DINOHead`
for a DINO head, plus what the tensors cannot say (attention heads, layer-norm eps, the order of a predicted
patch, normalisation) and where each part came from.
"""

from __future__ import annotations

import argparse
import hashlib
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from tppeft.errors import BackboneError
from tppeft.io import file_sha256

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)
TIMM_NORM_EPS = 1e-6  # timm's VisionTransformer LayerNorm eps (also MAE's and DINO's own code)
MAE_DECODER_HEADS = 16  # MAE's decoder (facebookresearch/mae models_mae.py): 16 heads at every size


def _block_count(state: dict[str, torch.Tensor], prefix: str) -> int:
    found = {int(m.group(1)) for k in state if (m := re.match(rf"{re.escape(prefix)}(\d+)\.", k))}
    return max(found) + 1 if found else 0


@dataclass
class DecoderWeights:
    """An MAE decoder in :class:`MAEDecoder` keys; the widths are read from the tensors."""

    state: dict[str, torch.Tensor]
    heads: int
    norm_eps: float | None = None  # None: b0's, timm's Block LayerNorm (1e-6) in the blocks, torch's (1e-5) at the end
    patch_order: str = "chw"  # how each predicted patch vector is ordered (see tppeft.pretext.masking)
    origin: str = ""
    norm_pix_loss: bool | None = None  # whether it was trained on per-patch normalised pixels, where known

    @property
    def dim(self) -> int:
        return self.state["dec_embed.weight"].shape[0]

    @property
    def depth(self) -> int:
        return _block_count(self.state, "dec_blocks.")

    def meta(self) -> dict:
        """What :class:`MAEDecoder` is built with, and where the decoder came from."""
        return {"dim": self.dim, "depth": self.depth, "heads": self.heads,
                "mlp_ratio": self.state["dec_blocks.0.mlp.fc1.weight"].shape[0] / self.dim,
                "qkv_bias": "dec_blocks.0.attn.qkv.bias" in self.state, "norm_eps": self.norm_eps,
                "patch_order": self.patch_order, "origin": self.origin, "norm_pix_loss": self.norm_pix_loss}

    def check(self, source: str) -> None:
        if self.dim % self.heads:
            raise BackboneError(f"{source}: backbone.decoder_heads {self.heads} does not divide the MAE decoder's "
                                f"width {self.dim}; set backbone.decoder_heads to a divisor of {self.dim}")


@dataclass
class DinoHeadWeights:
    """A DINO projection head in :class:`DINOHead` keys (``mlp.0/2/4``, ``prototypes``, optional ``gain``)
    and the loss centre saved with it."""

    state: dict[str, torch.Tensor]
    center: torch.Tensor | None = None
    origin: str = ""

    @property
    def out_dim(self) -> int:
        return self.state["prototypes"].shape[0]

    @property
    def hidden_dim(self) -> int:
        return self.state["mlp.0.weight"].shape[0]

    @property
    def bottleneck_dim(self) -> int:
        return self.state["prototypes"].shape[1]

    @property
    def in_dim(self) -> int:
        return self.state["mlp.0.weight"].shape[1]

    @property
    def gain(self) -> bool:
        return "gain" in self.state


@dataclass
class BackboneWeights:
    """A checkpoint read into the tool's terms.

    ``encoder``: timm ``VisionTransformer`` keys. ``arch``: timm keyword arguments the checkpoint states; with
    ``arch_given`` they are authoritative (the tool's own metadata), else they were read from the shapes and a
    named timm architecture must agree with them. ``num_heads`` and ``norm_eps``: what the file says, if it does.
    """

    layout: str  # "tppeft", "hf:vit_mae", "hf:vit", "hf:dinov2", "mae-pth", "timm-state", "dino", "timm"
    family: str  # whose convention it follows: "tppeft", "mae", "vit", "dinov2", "dino", "timm"
    source: str  # what backbone.checkpoint said
    files: list[Path]
    encoder: dict[str, torch.Tensor]
    arch: dict = field(default_factory=dict)
    arch_given: bool = False
    timm_name: str | None = None
    num_heads: int | None = None
    norm_eps: float = TIMM_NORM_EPS
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    norm_source: str = ""  # where mean/std came from
    decoder: DecoderWeights | None = None
    dino_head: DinoHeadWeights | None = None
    meta: dict = field(default_factory=dict)  # the tool's own metadata (what the backbone was trained on, ...)
    notes: list[str] = field(default_factory=list)  # what was found but left out, and why

    def sha256(self) -> str:
        """Of the one weight file, or of the files' digests in order."""
        digests = [file_sha256(f) for f in self.files]
        if len(digests) == 1:
            return digests[0]
        return hashlib.sha256("".join(digests).encode()).hexdigest()


def family_normalisation(family: str) -> tuple[tuple, tuple]:
    """The input normalisation a family's checkpoints were trained with when nothing says otherwise: ImageNet
    statistics for MAE (and RETFound), DINO and DINOv2; (x - 0.5) / 0.5 for Google's ViT and the tool's own."""
    if family in ("mae", "dino", "dinov2"):
        return IMAGENET_MEAN, IMAGENET_STD
    return HALF, HALF


def without_prefix(state: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def torch_load(path: Path) -> dict:
    """A pickled checkpoint read with ``weights_only`` (no code runs); ``argparse.Namespace`` is allowed, as MAE's
    and DINO's training scripts save their arguments beside the weights."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BackboneError(f"backbone.checkpoint '{path}': cannot be read as a PyTorch checkpoint with "
                            f"weights_only ({first[:200]}); save its state dict alone (torch.save(model.state_dict()))"
                            ) from None
    if not isinstance(obj, dict):
        raise BackboneError(f"backbone.checkpoint '{path}': holds a {type(obj).__name__}, expected a state dict "
                            "or a dict with one ('model', 'teacher', 'student')")
    return obj


def tensors_only(state: dict) -> dict[str, torch.Tensor]:
    return {k: v.float() for k, v in state.items() if isinstance(v, torch.Tensor)}


def reorder_patch_outputs(t: torch.Tensor, patch: int, src: str, dst: str) -> torch.Tensor:
    """Rows of a pixel-prediction weight (P*P*C, D) or bias (P*P*C,) from patch order ``src`` to ``dst``
    (``chw`` or ``hwc``): an exact permutation, so the layer predicts the same pixels in the other order."""
    if src == dst:
        return t
    channels = t.shape[0] // (patch * patch)
    rest = t.shape[1:]
    if src == "chw":  # (C, P, P) -> (P, P, C)
        return t.reshape(channels, patch, patch, *rest).movedim(0, 2).reshape(t.shape)
    return t.reshape(patch, patch, channels, *rest).movedim(2, 0).reshape(t.shape)


def zero_qkv_bias(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """``state`` with a zero qkv bias for every block under ``prefix`` that has none (adding zero is exact)."""
    out = dict(state)
    for k, v in state.items():
        if k.startswith(prefix) and k.endswith(".attn.qkv.weight"):
            out.setdefault(k.removesuffix("weight") + "bias", torch.zeros(v.shape[0], dtype=v.dtype))
    return out
