"""``tppeft export``: saved target parameters as adapter files, or merged into a plain timm checkpoint.

The merged checkpoint is written by timm itself (``timm.models.save_for_hf``: ``model.safetensors`` with
plain timm keys + ``config.json``), so ``timm.create_model("local-dir:OUT", pretrained=True)`` loads it.
A folder of saved target parameters describes itself (``target_params.json``: method, ``peft`` config and
backbone identity), so the backbone and the method are rebuilt from it alone.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import timm
import torch
from safetensors.torch import load_file
from timm.models import save_for_hf
from torch import nn

from tppeft.backbones import Backbone, build_backbone
from tppeft.config import BackboneConfig, PeftConfig
from tppeft.io import write_json
from tppeft.rundir import HEAD, OutputError, RunFolder, RunPaths
from tppeft.targets import Attached, TargetMethod, TargetParamError, get_target_method
from tppeft.targets.base import META_FILE, read_meta

HEAD_FILE = HEAD
EXPORT_MARKER = "tppeft_export.json"
# Largest |merged - adapted| output difference accepted on random inputs (float32 rounding of the merge).
MERGE_TOLERANCE = 1e-4


def find_target_dir(source: Path, arm: str | None = None, seed: int = 0) -> Path:
    """The folder of saved target parameters that ``source`` means.

    ``source`` may be that folder itself, a ``tppeft pretrain`` / ``finetune`` output, or a ``tppeft run``
    folder (then the fine-tuned parameters of ``arm`` (default ``tpp``, else the first arm) and ``seed``).
    """
    source = Path(source)
    if (source / META_FILE).is_file():
        return source
    for sub in (RunPaths(source).finetuned, RunPaths(source).target_params):
        if (sub / META_FILE).is_file():
            return sub
    folder = RunFolder(source)
    runs = folder.runs_root
    if runs.is_dir():
        arms = sorted(p.name for p in runs.iterdir() if p.is_dir())
        arm = arm or ("tpp" if "tpp" in arms else (arms[0] if arms else None))
        target = folder.run(str(arm), seed).finetuned
        if not (target / META_FILE).is_file():
            raise TargetParamError(f"{source}: no fine-tuned target parameters for arm '{arm}' seed {seed} "
                                   f"(arms here: {arms}); choose with --arm and --seed")
        return target
    raise TargetParamError(f"{source}: holds no saved target parameters (expected {META_FILE}, a pretrain or "
                           "finetune output folder, or a run folder)")


def rebuild(target_dir: Path, checkpoint: str | None = None) -> tuple[Backbone, TargetMethod, Attached, dict]:
    """Backbone + method from ``target_params.json``, with the saved parameters loaded."""
    meta = read_meta(target_dir)
    identity = meta.get("backbone")
    if not identity:
        raise TargetParamError(f"{target_dir / META_FILE}: records no backbone identity; cannot rebuild it")
    # a name the tool chose as a stand-in of the checkpoint's width is chosen again from the shapes
    name = None if identity.get("name_source") == "shapes" else identity["name"]
    heads = identity.get("arch_kwargs", {}).get("num_heads") if name is None else None
    cfg = BackboneConfig(name=name, heads=heads, checkpoint=checkpoint or identity.get("checkpoint"),
                         pretrained=bool(identity.get("pretrained", False)))
    backbone = build_backbone(cfg, identity.get("arch_kwargs", {}).get("img_size"))
    method = get_target_method(PeftConfig.model_validate(meta["peft_config"]), backbone.identity)
    vit = backbone.fresh_model()
    handle, _ = method.attach(vit)
    method.load(handle, target_dir)
    vit.eval()
    return backbone, method, handle, meta


def _head(target_dir: Path) -> nn.Linear | None:
    path = target_dir / HEAD_FILE
    if not path.is_file():
        return None
    state = load_file(path)
    if set(state) != {"weight", "bias"} or state["weight"].ndim != 2:
        return None  # a task head (segmentation decoder, slice aggregation): copied as a file, never merged
    head = nn.Linear(state["weight"].shape[1], state["weight"].shape[0])
    head.load_state_dict(state)
    return head


def _prepare(out: Path, overwrite: bool) -> None:
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise OutputError(f"output folder '{out}' is not empty; pass --overwrite or choose another --output")
        if not (out / EXPORT_MARKER).is_file():
            raise OutputError(f"output folder '{out}' holds no tppeft export ({EXPORT_MARKER}); refusing to "
                              "delete it even with --overwrite")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def merged_timm_model(backbone: Backbone, method: TargetMethod, handle: Attached,
                      head: nn.Linear | None) -> tuple[nn.Module, dict]:
    """A timm model created by name with the merged weights (and the head) loaded strictly."""
    merged = method.merge(handle)
    state = dict(merged.state_dict())
    num_classes = 0
    if head is not None:
        num_classes = head.out_features
        state.update({f"head.{k}": v for k, v in head.state_dict().items()})
    args = {**backbone.identity.get("arch_kwargs", {}), "num_classes": num_classes}
    model = timm.create_model(backbone.identity["name"], pretrained=False, **args)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise TargetParamError(f"merging '{method.name}' did not give plain timm weights: {str(e)[:300]}") from None
    return model.eval(), args


@torch.no_grad()
def export(source: Path, out: Path, merged: bool = False, arm: str | None = None, seed: int = 0,
           checkpoint: str | None = None, overwrite: bool = False) -> dict:
    """Write the adapter files (default) or a merged timm checkpoint; returns what was written."""
    target_dir = find_target_dir(source, arm, seed)
    backbone, method, handle, meta = rebuild(target_dir, checkpoint)
    if merged and not method.mergeable:
        method.merge(handle)  # raises the method's own "cannot be merged" error
    out = Path(out)
    _prepare(out, overwrite)
    head = _head(target_dir)
    info = {"source": str(target_dir), "method": method.name, "merged": merged, "backbone": backbone.identity,
            "num_params": meta.get("num_params"), "head": head is not None}
    if merged:
        model, args = merged_timm_model(backbone, method, handle, head)
        x = torch.randn(4, 3, backbone.image_size, backbone.image_size, generator=torch.Generator().manual_seed(0))
        adapted = handle.vit(x) if head is None else head(handle.vit(x))
        diff = float((model(x) - adapted).abs().max())
        if diff > MERGE_TOLERANCE:
            raise TargetParamError(f"merged '{method.name}' differs from the adapted model by {diff:.2e} "
                                   f"(> {MERGE_TOLERANCE:g}); not written")
        save_for_hf(model, str(out), model_args=args, safe_serialization=True,
                    data_config={"mean": backbone.mean, "std": backbone.std},
                    model_config={"pretrained_cfg": {"tag": f"tppeft-{method.name}"}})
        files = ["model.safetensors", "config.json"]
        if head is None and (target_dir / HEAD_FILE).is_file():
            shutil.copy2(target_dir / HEAD_FILE, out / HEAD_FILE)  # the task head, beside the merged backbone
            files.append(HEAD_FILE)
        info.update(model_args=args, max_abs_diff_vs_adapted=diff, files=files,
                    load_with=f"timm.create_model('local-dir:{out}', pretrained=True)")
    else:
        files = sorted(p.name for p in target_dir.iterdir() if p.is_file())
        for name in files:
            shutil.copy2(target_dir / name, out / name)
        info["files"] = files
    write_json(out / EXPORT_MARKER, info)
    return info


def describe(info: dict) -> str:
    lines = [f"exported {info['method']} from {info['source']}: {', '.join(info['files'])}"]
    if info["merged"]:
        lines.append(f"merged into the backbone (max |merged - adapted| = {info['max_abs_diff_vs_adapted']:.1e}); "
                     f"load with {info['load_with']}")
    return "\n".join(lines) + ("" if info["head"] else "\n(no classification head in the source: features only)")


__all__ = ["describe", "export", "find_target_dir", "merged_timm_model", "rebuild"]
