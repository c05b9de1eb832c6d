"""The Python API: the comparison (:func:`run`), each stage on a user's own model and images
(:func:`pretrain`, :func:`finetune`, :func:`evaluate`) and the data readers (:func:`load_data`).

These names and their parameters are stable; ``import tppeft`` offers them (``tppeft.pretrain(...)``). Options
of the stages are the configuration's keys (``tppeft config --docs``), given by name: ``r=16`` (``peft.r``),
``mask_ratio=0.75`` (``pretext.mask_ratio``), ``lr=...`` (the stage's own learning rate), ``device="cpu"``.
"""

from __future__ import annotations

import contextlib
import copy
import json
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from safetensors.torch import load_file
from torch import nn

from tppeft.api_inputs import (
    ATTRIBUTE,
    Trained,
    as_backbone,
    backbone_config,
    labelled_dataset,
    make_context,
    own_trainable,
    stage_config,
    trained_of,
    unlabelled_dataset,
)
from tppeft.arms import get_arm
from tppeft.bundled import config_path, resolve
from tppeft.config import Config, ConfigError, apply_override, config_from_tree, load_config
from tppeft.data import ImageDataset, load_dataset
from tppeft.data.config import SplitConfig
from tppeft.rundir import OutputError, RunFolder, RunPaths, estimate_run_bytes

__all__ = ["evaluate", "finetune", "load_backbone", "load_data", "pretrain", "run"]


def _quiet(_: str) -> None:
    pass


def as_config(config: Config | Mapping | str | Path | None = None,
              overrides: Mapping[str, Any] | Sequence[str] = ()) -> Config:
    """A :class:`Config` from a Config, a mapping of keys (as a YAML file holds them), a YAML file or the name of
    a bundled config (None: the defaults); ``overrides`` are ``{"finetune.epochs": 3}`` or ``["finetune.epochs=3"]``."""
    if isinstance(config, str | Path):
        tree = load_config(config_path(config)).model_dump(mode="json")
    elif isinstance(config, Config):
        tree = config.model_dump(mode="json")
    else:
        tree = copy.deepcopy(dict(config or {}))
    if isinstance(overrides, Mapping):
        for key, value in overrides.items():
            apply_override(tree, key.split("."), value)
        return config_from_tree(tree, "overrides")
    if overrides:
        from tppeft.config import parse_override

        for text in overrides:
            apply_override(tree, *parse_override(text))
    return config_from_tree(tree, str(config) if isinstance(config, str | Path) else "config")


def _check_pretexts(cfg: Config) -> None:
    """An unknown pretext task (of ``pretext`` or a ``tpp_<pretext>`` arm) is a config error before any run."""
    from tppeft.pretext import get_pretext

    get_pretext(cfg.pretext)
    for arm in cfg.arms:
        variant = get_arm(arm).pretext_config(cfg.pretext)
        if variant is not None:
            try:
                get_pretext(variant)
            except ConfigError as e:
                raise ConfigError(f"arms: '{arm}': {e}") from None


def run(config: Config | Mapping | str | Path | None = None, output: str | Path | None = None, *,
        overrides: Mapping[str, Any] | Sequence[str] = (), overwrite: bool = False, jobs: int = 1,
        log: Callable[[str], None] = print) -> dict:
    """``tppeft run``: every arm over every seed into the folder ``output`` (default ``runs/run-<time>``);
    returns the summary (what ``summary.json`` holds). Everything is checked before the folder is created.
    ``jobs`` > 1 makes the runs in that many worker processes side by side (``tppeft run --jobs``)."""
    from tppeft.experiment.comparison import run_comparison
    from tppeft.experiment.context import prepare_context
    from tppeft.experiment.preflight import check_stage_from, check_stage_images_from, check_unshared_batches, preflight

    cfg = as_config(config, overrides)
    _check_pretexts(cfg)
    folder = RunFolder.at(output, "run").check_new(overwrite)
    pretext = any(get_arm(a).has_tpp_stage for a in cfg.arms)
    check_stage_from(cfg, pretext, cfg.arms)
    check_unshared_batches(cfg, pretext, cfg.arms)
    ctx = prepare_context(cfg, log)
    check_stage_images_from(ctx, pretext)
    trainable = preflight(ctx, pretext)
    need = estimate_run_bytes(trainable, cfg.seeds * len(cfg.arms), cfg.checkpoint.keep_finished)
    folder.check_new(overwrite, need)
    folder.create(overwrite, cfg, {"command": "run", **({"jobs": jobs} if jobs > 1 else {})})
    if jobs > 1:
        from tppeft.jobs import run_jobs

        return run_jobs(cfg, folder, ctx, log, jobs)
    return run_comparison(cfg, folder.root, log, ctx=ctx)


def load_data(path: str | Path, *, image_size: int | None = None, limit: int | None = None,
              split: SplitConfig | Mapping | None = None, cache: bool | str = "auto", cache_dir: str | None = None,
              task: str = "auto", log: Callable[[str], None] = _quiet) -> ImageDataset:
    """Read any accepted layout (``data.path``) as the tool does: ``image_size`` is where images of several
    sizes are resized to; ``split`` is ``data.split`` (e.g. ``{"val": 0.1, "test": 0.2, "group_by": "patient"}``)."""
    split_cfg = split if isinstance(split, SplitConfig) else SplitConfig(**(split or {}))
    return load_dataset(resolve(str(path)), task, limit, size=image_size, split=split_cfg, cache=cache,
                        cache_dir=cache_dir, log=log)


def load_backbone(spec: str | Path | Mapping, image_size: int | None = None) -> nn.Module:
    """The frozen timm ViT (no classifier) that ``spec`` names as :func:`pretrain` reads it: a timm model name
    (hub weights), a checkpoint path, ``"bundled:b0"`` or a ``backbone`` section; at ``image_size`` when given."""
    from tppeft.backbones import build_backbone

    return build_backbone(backbone_config(spec), image_size).model


@contextlib.contextmanager
def _stage_folder(output: str | Path | None) -> Iterator[Path]:
    """Where a stage writes its files: ``output`` (new or empty: a stage resumes from what a folder holds, so
    an old one is never reused), else a temporary folder removed afterwards."""
    if output is None:
        with tempfile.TemporaryDirectory(prefix="tppeft-") as tmp:
            yield Path(tmp)
        return
    out = Path(output)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OutputError(f"output '{out}' exists and is not an empty folder")
    out.mkdir(parents=True, exist_ok=True)
    yield out
    RunPaths(out).drop_checkpoints()


def _epochs(out_dir: Path, stage: str) -> list[dict]:
    """The stage's per-epoch lines of ``metrics.jsonl`` (without the ``stage`` key)."""
    path = RunPaths(out_dir).metrics
    lines = [json.loads(t) for t in path.read_text().splitlines()] if path.is_file() else []
    return [{k: v for k, v in line.items() if k != "stage"} for line in lines
            if line.get("stage") == stage and "epoch" in line]


def pretrain(model: Any, images: Any, method: str = "lora", pretext: str = "mae", epochs: int = 6, *,
             val_images: Any = None, seed: int = 0, output: str | Path | None = None,
             log: Callable[[str], None] = _quiet, **options: Any) -> tuple[nn.Module, list[dict]]:
    """The TPP stage on your own model and images; returns ``(model, history)``.

    ``model``: a timm ``VisionTransformer`` (or a peft model of one), a timm model name (hub weights), a
    checkpoint path or ``"bundled:b0"``. ``images``: unlabelled images as a float tensor (N, C, H, W) in [0, 1]
    (or uint8), a ``Dataset`` or a ``DataLoader`` of them (labels in pairs are ignored), or a dataset of
    :func:`load_data` (its training split). The pretext loss is measured on ``val_images`` before and after (on
    up to 512 of the images without them). ``method`` is ``peft.method``, ``pretext`` is ``pretext.method``.

    The returned model is a copy of yours (without its classifier) with the pre-trained target parameters: a
    ``peft.PeftModel`` for the peft methods (lora, loha, lokr, ia3: ``save_pretrained`` works), else the ViT with
    the method's modules; the frozen weights are trainable=False, the target parameters trainable. ``history``:
    one ``{"epoch", "train_loss"}`` per epoch. ``output``: a new folder to keep the files in
    (``target_params/``, ``metrics.jsonl``).
    """
    from tppeft.experiment.model import build_run_model
    from tppeft.experiment.pretext_stage import pretrain_stage
    from tppeft.pretext import get_pretext

    # no linear probe by default: the images may come without labels (probe=True asks for it on labelled data)
    tree = {"peft": {"method": method}, "pretext": {"method": pretext, "epochs": epochs, "probe": False}}
    cfg = stage_config("pretext", tree, options)
    get_pretext(cfg.pretext)
    ctx = make_context(cfg, as_backbone(model, cfg), unlabelled_dataset(images, val_images), log)
    run_model = build_run_model(ctx, seed)
    with _stage_folder(output) as out_dir:
        pretrain_stage(ctx, run_model, seed, out_dir, "[pretrain]")
        history = _epochs(out_dir, "pretext")
    returned = run_model.handle.peft_model or run_model.vit
    setattr(returned, ATTRIBUTE, Trained(run_model, ctx.backbone))
    return returned, history


def finetune(model: Any, data: Any, *, method: str | None = None, epochs: int = 6, seed: int = 0,
             num_classes: int | None = None, output: str | Path | None = None, log: Callable[[str], None] = _quiet,
             **options: Any) -> tuple[nn.Module, list[dict]]:
    """The fine-tuning stage: target parameters plus a new task head, the best validation epoch kept; returns
    ``(model, history)``.

    ``model``: a model :func:`pretrain` returned (a copy of it is trained), or with ``method`` any model
    :func:`pretrain` takes, given fresh target parameters (ordinary PEFT), or your own peft model (its trainable
    parameters are trained). ``data``: a dataset of :func:`load_data`, or ``{"train": ..., "val": ..., "test":
    ...}`` / the training data alone, each an (images, labels) pair, a ``Dataset`` or a ``DataLoader`` of
    (image, label); labels are class ids (N,) or 0/1 (N, L) for multi-label. Without ``val`` a stratified 10%
    of ``train`` is held out (``split={"val": ...}``). The returned model maps images (normalised, at the
    backbone's input size) to logits: ``.vit`` with the fine-tuned target parameters and ``.head``;
    :func:`evaluate` scores it. ``history``: one ``{"epoch", "train_loss", "val": {...}}`` per epoch.
    """
    from tppeft.experiment.finetune_stage import finetune_stage
    from tppeft.experiment.model import build_run_model

    trained = trained_of(model)
    if trained is not None and method not in (None, getattr(trained.run.method, "name", None)):
        raise ConfigError(f"finetune: model carries '{trained.run.method.name}' target parameters, not '{method}'")
    tree: dict = {"finetune": {"epochs": epochs}, "peft": {"method": method or "lora"}}
    if trained is not None and trained.run.method is not None:
        tree["peft"] = trained.run.method.cfg.model_dump(mode="json")
    cfg = stage_config("finetune", tree, options)
    backbone = trained.backbone if trained is not None else as_backbone(model, cfg)
    ctx = make_context(cfg, backbone, labelled_dataset(data, cfg.data.split, num_classes), log)
    if trained is not None:
        run_model = copy.deepcopy(trained.run)
    elif method is not None:
        run_model = build_run_model(ctx, seed)
    else:
        run_model = own_trainable(model)
    run_model.vit.to(ctx.device)
    with _stage_folder(output) as out_dir:
        finetune_stage(ctx, run_model, seed, out_dir, "[finetune]", epochs=epochs)
        classifier = ctx.task.build_model(run_model.vit).to(ctx.device)
        classifier.head.load_state_dict(load_file(str(RunPaths(out_dir).head), device=str(ctx.device)))
        history = _epochs(out_dir, "finetune")
    classifier.eval()
    labels = {"task": ctx.data.task, "num_classes": ctx.data.num_classes, "class_names": ctx.data.class_names}
    setattr(classifier, ATTRIBUTE, Trained(run_model, backbone, labels))
    return classifier, history


def evaluate(model: nn.Module, data: Any, split: str = "test", *, log: Callable[[str], None] = _quiet,
             **options: Any) -> dict[str, float]:
    """The task's metrics (classification: ``acc``, ``auc``; segmentation: ``dice``, ``iou``) and ``loss`` of a
    model :func:`finetune` returned on ``split`` of ``data`` (as :func:`finetune` takes it; a bare (images,
    labels) pair, a ``Dataset`` or a ``DataLoader`` is scored whole)."""
    trained = trained_of(model)
    if trained is None or not trained.labels:
        raise ValueError("evaluate takes a model returned by tppeft.finetune")
    if not isinstance(data, ImageDataset):
        part = data[split] if isinstance(data, Mapping) else data
        data, split = {"train": part, "val": part, "test": part}, "test"
    cfg = stage_config("finetune", {"peft": {"method": "lora"}}, options)
    ctx = make_context(cfg, trained.backbone, labelled_dataset(data, cfg.data.split, trained.labels["num_classes"]),
                       log)
    if ctx.data.num_classes != trained.labels["num_classes"] or ctx.data.task != trained.labels["task"]:
        raise ValueError(f"data: {ctx.data.num_classes} {ctx.data.task} classes, the model predicts "
                         f"{trained.labels['num_classes']} {trained.labels['task']}")
    model.to(ctx.device)
    with ctx.inference():
        return ctx.task.evaluate(ctx, model, split)
