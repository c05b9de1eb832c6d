"""Hub names: ``hf-hub:ORG/NAME`` (a Hugging Face Hub repository, transformers or timm or a ``.pth``) and
``timm:NAME`` (timm's pretrained weights of a model name).

Before anything is downloaded the hub's host gets a few seconds to answer; when it does not, huggingface_hub's
offline mode is on for the call, so the files come from the local hub cache or the call fails at once (instead
of retrying an unreachable host for about a minute).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import timm
import torch

from tppeft.backbones.architecture import check_timm_name
from tppeft.backbones.formats.base import BackboneWeights, tensors_only
from tppeft.errors import BackboneError

HF_HUB = "hf-hub:"
TIMM = "timm:"
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
LOCAL_ALTERNATIVE = ("--set backbone.pretrained=false --set backbone.checkpoint=PATH (a local checkpoint; "
                     "or the bundled reference, backbone.checkpoint=bundled:b0)")


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


def create_timm(name: str, pretrained: bool, **kwargs) -> torch.nn.Module:
    """``timm.create_model(name, num_classes=0)``; pretrained weights from the hub or, offline, its local cache."""
    check_timm_name(name)
    offline = pretrained and not hub_reachable()
    try:
        with hub_offline() if offline else contextlib.nullcontext():
            return timm.create_model(name, pretrained=pretrained, num_classes=0, **kwargs)
    except Exception as e:  # hub download errors come in many types
        if not pretrained:
            raise BackboneError(f"cannot build timm model '{name}' with {kwargs}: {e}") from None
        why = ("the Hugging Face Hub is unreachable and the weights are not in the local hub cache"
               if offline else f"{type(e).__name__}: {e}")
        raise BackboneError(f"cannot load timm's pretrained weights for '{name}' ({why}). Use a local checkpoint "
                            f"instead: {LOCAL_ALTERNATIVE}") from None


def snapshot(repo: str) -> Path:
    """The local folder of Hub repository ``repo``: downloaded (configs and weights only), or from the local hub
    cache when the hub is unreachable."""
    from huggingface_hub import snapshot_download

    offline = not hub_reachable()
    try:
        with hub_offline() if offline else contextlib.nullcontext():
            folder = Path(snapshot_download(repo, allow_patterns=["*.json", "*.safetensors"],
                                            local_files_only=offline))
            if not any(folder.glob("*.safetensors")):  # a repository of pickled weights only (RETFound: one .pth)
                folder = Path(snapshot_download(repo, allow_patterns=["*.json", "*.pth", "*.pt", "*.bin"],
                                                local_files_only=offline))
    except Exception as e:  # hub errors come in many types
        why = ("the Hugging Face Hub is unreachable and the repository is not in the local hub cache"
               if offline else f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        raise BackboneError(f"backbone.checkpoint '{HF_HUB}{repo}': cannot be read ({why}); download it once where "
                            f"the hub is reachable, or use a local copy: {LOCAL_ALTERNATIVE}") from None
    return folder


def read_timm_name(name: str, source: str) -> BackboneWeights:
    """timm's pretrained weights of ``name`` (a model name, optionally with its pretrained tag)."""
    model = create_timm(name, True)
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    mean, std = cfg.get("mean"), cfg.get("std")
    return BackboneWeights(
        layout="timm", family="timm", source=source, files=[], timm_name=name,
        encoder={k: v for k, v in tensors_only(model.state_dict()).items() if not k.startswith("head.")},
        mean=tuple(mean) if mean else None, std=tuple(std) if std else None,
        norm_source="timm's pretrained_cfg" if mean else "")


def read_timm_folder(folder: Path, source: str) -> BackboneWeights:
    """A folder in timm's Hub layout (``config.json`` naming the ``architecture``, ``model.safetensors`` or
    ``pytorch_model.bin`` with timm keys), as ``timm.models.push_to_hf`` and ``tppeft export --merged`` write it."""
    from tppeft.backbones.formats.base import torch_load

    config = json.loads((folder / "config.json").read_text())
    weights = folder / "model.safetensors"
    if weights.is_file():
        from safetensors.torch import load_file

        state = load_file(weights)
    elif (folder / "pytorch_model.bin").is_file():
        weights = folder / "pytorch_model.bin"
        state = torch_load(weights)
    else:
        raise BackboneError(f"backbone.checkpoint '{source}': timm folder {folder} has no model.safetensors or "
                            "pytorch_model.bin")
    pcfg = config.get("pretrained_cfg", {})
    mean, std = pcfg.get("mean"), pcfg.get("std")
    args = {k: v for k, v in (config.get("model_args") or {}).items() if k != "num_classes"}
    return BackboneWeights(
        layout="timm", family="timm", source=source, files=[weights], timm_name=config["architecture"],
        arch=args, arch_given=bool(args),
        encoder={k: v for k, v in tensors_only(state).items() if not k.startswith("head.")},
        mean=tuple(mean) if mean else None, std=tuple(std) if std else None,
        norm_source="the folder's config.json" if mean else "")
