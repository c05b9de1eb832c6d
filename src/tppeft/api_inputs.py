"""What the Python API accepts, turned into what the stages use: the options of a call into a :class:`Config`,
a user's model into a :class:`Backbone` (or the run model :func:`tppeft.pretrain` returned), their images
(a tensor, a ``Dataset`` or a ``DataLoader``) into an :class:`ImageDataset`, and the :class:`Context` of a call."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tppeft.backbones import Backbone, BackboneError, build_backbone, frozen_state_digest
from tppeft.config import BackboneConfig, Config, ConfigError, config_from_tree
from tppeft.data import DataError, ImageDataset, Split
from tppeft.data.config import SplitConfig
from tppeft.data.medmnist import SPLITS, subset
from tppeft.data.split import draw
from tppeft.engine import resolve_device, set_deterministic, set_threads
from tppeft.engine.devices import autocast_dtype
from tppeft.experiment.context import Context
from tppeft.experiment.model import RunModel
from tppeft.tasks import task_for
from tppeft.tracking import check_available

ATTRIBUTE = "tppeft"  # the attribute of a returned model that holds its :class:`Trained`
TOP_LEVEL = ("device", "threads", "eval_batch_size")
SECTIONS = {"pretext": ("pretext", "peft", "data", "train", "backbone", "log"),
            "finetune": ("finetune", "peft", "data", "train", "backbone", "log")}
FILE_KEYS = ("path", "limit", "cache", "cache_dir", "volume", "data")  # data.* and pretext.data: reading files
HELD_OUT = 512  # images of the pretext loss before and after the TPP stage, when no val_images are given


@dataclass
class Trained:
    """What tppeft knows of a model it returned: the run model (backbone copy + target parameters), the frozen
    backbone it came from, and after fine-tuning what the head predicts."""

    run: RunModel
    backbone: Backbone
    labels: dict = field(default_factory=dict)  # task ("multiclass"/"multilabel"), num_classes, class_names

    def save(self, directory: str | Path) -> Path:
        """The target parameters in tppeft's format (with peft's adapter files for the peft methods)."""
        if self.run.method is None:
            raise ValueError("this model has no target-parameter method to save (it trains its own parameters)")
        self.run.method.save(self.run.handle, Path(directory))
        return Path(directory)


def trained_of(model: Any) -> Trained | None:
    found = getattr(model, ATTRIBUTE, None) if isinstance(model, nn.Module) else None
    return found if isinstance(found, Trained) else None


def stage_config(stage: str, tree: dict, options: Mapping[str, Any]) -> Config:
    """``tree`` plus each option put in the first section of the stage that has the key (see SECTIONS)."""
    tree = copy.deepcopy(tree)
    for key, value in options.items():
        if key in TOP_LEVEL:
            tree[key] = value
            continue
        if key in FILE_KEYS:
            raise ConfigError(f"option '{key}' is about reading data files (a config's data.* or pretext.data); a "
                              "call trains on the images it is given: pass all of them (tppeft.load_data reads files)")
        section = next((s for s in SECTIONS[stage] if key in Config.model_fields[s].annotation.model_fields), None)
        if section is None:
            raise ConfigError(f"unknown option '{key}': options are keys of the sections {list(SECTIONS[stage])} "
                              f"or {list(TOP_LEVEL)} (tppeft config --docs lists them)")
        tree.setdefault(section, {})[key] = value
    return config_from_tree(tree, "options")


# -- models

def backbone_config(spec: str | Path | Mapping | BackboneConfig) -> BackboneConfig:
    """A timm model name (hub weights), a checkpoint path or ``bundled:b0``, or the ``backbone`` section."""
    if isinstance(spec, BackboneConfig):
        return spec
    if isinstance(spec, Mapping):
        return BackboneConfig(**spec)
    import timm

    text = str(spec)
    if timm.is_model(text):
        return BackboneConfig(name=text, checkpoint=None, pretrained=True)
    return BackboneConfig(checkpoint=text)


def backbone_of_module(model: nn.Module, cfg: Config) -> Backbone:
    """A frozen copy of a user's timm ViT (a peft model's base model), without its classifier, at
    ``data.image_size`` when set; normalised as its timm config says unless ``backbone.mean/std`` are set."""
    from timm.models.vision_transformer import VisionTransformer

    vit = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not isinstance(vit, VisionTransformer) or vit.cls_token is None or vit.pos_embed is None:
        raise BackboneError(f"expected a timm VisionTransformer with a class token and absolute position embedding "
                            f"(or a peft model of one), got {type(vit).__name__}")
    frozen = copy.deepcopy(vit)
    frozen.reset_classifier(0)
    if cfg.data.image_size and cfg.data.image_size != frozen.patch_embed.img_size[0]:
        frozen.set_input_size(img_size=cfg.data.image_size)
    frozen.requires_grad_(False)
    frozen.eval()
    pcfg = getattr(vit, "pretrained_cfg", None) or {}
    mean = cfg.backbone.mean or tuple(pcfg.get("mean", (0.5,) * 3))
    std = cfg.backbone.std or tuple(pcfg.get("std", (0.5,) * 3))
    identity = {"name": pcfg.get("architecture") or type(vit).__name__, "source": "python"}
    return Backbone(frozen, mean, std, frozen.patch_embed.img_size[0], frozen.patch_embed.patch_size[0], identity)


def as_backbone(model: Any, cfg: Config) -> Backbone:
    """The frozen backbone of ``model``: a :class:`Backbone`, a module, or what :func:`backbone_config` reads."""
    if isinstance(model, Backbone):
        return model
    if trained_of(model) is not None:  # a model tppeft returned: the frozen backbone it was made from
        return trained_of(model).backbone
    if isinstance(model, nn.Module):
        return backbone_of_module(model, cfg)
    if isinstance(model, str | Path | Mapping | BackboneConfig):
        return build_backbone(backbone_config(model), cfg.data.image_size)
    raise TypeError(f"model: expected a timm ViT, a peft model of one, a model returned by tppeft, a timm name or a "
                    f"checkpoint path; got {type(model).__name__}")


def own_trainable(model: nn.Module) -> RunModel:
    """A copy of a user's model that trains the parameters they left trainable (a peft model's adapters)."""
    model = copy.deepcopy(model)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if hasattr(base, "reset_classifier"):
        base.reset_classifier(0)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    if not names or len(names) == len(list(model.parameters())):
        raise ValueError("finetune: pass method='lora' (or another peft.method) to attach new target parameters, "
                         "a model returned by tppeft.pretrain, or a model whose frozen parameters are frozen "
                         "(requires_grad=False) and whose trainable ones are not")
    return RunModel(model, None, None, names, frozen_state_digest(model, set(names)),
                    sum(p.numel() for n, p in model.named_parameters() if n not in names))


# -- images and labels

def _first(item: Any) -> Any:
    return item[0] if isinstance(item, tuple | list) else item


def _image_tensor(x: Any) -> torch.Tensor:
    """One image or a batch as a tensor; a PIL image as (C, H, W) uint8."""
    if hasattr(x, "mode") and hasattr(x, "size") and not isinstance(x, torch.Tensor):  # a PIL image
        arr = np.asarray(x)
        return torch.from_numpy(np.ascontiguousarray(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)))
    return torch.as_tensor(x)


def _stack(parts: list[torch.Tensor], what: str) -> torch.Tensor:
    shapes = {tuple(p.shape[1:]) for p in parts}
    if len(shapes) > 1:
        raise DataError(f"{what}: images of different shapes {sorted(shapes)[:3]}; resize them to one size (a "
                        "transform of the Dataset)")
    return torch.cat(parts)


def _collect(source: Any, pick: Callable[[Any], Any], what: str) -> torch.Tensor:
    """Stack what ``pick`` takes of every item of a ``Dataset`` or every batch of a ``DataLoader``."""
    from torch.utils.data import DataLoader

    if isinstance(source, DataLoader):
        parts = [_image_tensor(pick(batch)) for batch in source]
    elif hasattr(source, "__len__") and hasattr(source, "__getitem__"):
        parts = [_image_tensor(pick(source[i]))[None] for i in range(len(source))]
    elif isinstance(source, Iterable):
        parts = [_image_tensor(pick(batch)) for batch in source]
    else:
        raise TypeError(f"{what}: expected a tensor, an array, a Dataset or a DataLoader; got {type(source).__name__}")
    if not parts:
        raise DataError(f"{what}: no images")
    return _stack(parts, what)


def as_images(images: Any, what: str = "images") -> torch.Tensor:
    """(N, C, H, W) pixels, uint8 or float32 in [0, 1], from a tensor or array ((N, H, W) and (N, H, W, C) too),
    a ``Dataset`` of images (or of (image, label) pairs) or a ``DataLoader`` of such batches."""
    x = torch.as_tensor(images) if isinstance(images, torch.Tensor | np.ndarray) else _collect(images, _first, what)
    if x.dim() == 3:
        x = x[:, None]
    elif x.dim() == 4 and x.shape[1] not in (1, 3) and x.shape[-1] in (1, 3):
        x = x.permute(0, 3, 1, 2)
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise DataError(f"{what}: shape {tuple(x.shape)}; expected (N, C, H, W) with C 1 or 3, or (N, H, W)")
    if x.dtype == torch.uint8:
        return x.contiguous()
    if not x.is_floating_point():
        raise DataError(f"{what}: dtype {x.dtype}; expected float in [0, 1] or uint8")
    x = x.float()
    if not torch.isfinite(x).all() or x.min() < 0 or x.max() > 1:
        raise DataError(f"{what}: pixels must be in [0, 1] (not normalised: tppeft applies the backbone's mean and "
                        f"std), got {float(x.min()):.3g}..{float(x.max()):.3g}")
    return x.contiguous()


def as_labels(labels: Any, n: int, what: str) -> torch.Tensor:
    """(N,) class ids or (N, L) 0/1 labels as int64."""
    y = torch.as_tensor(labels)
    if y.dim() == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.shape[0] != n or y.dim() not in (1, 2):
        raise DataError(f"{what}: {tuple(y.shape)} labels for {n} images; expected (N,) class ids or (N, L) 0/1")
    if y.is_floating_point() and not torch.equal(y, y.round()):
        raise DataError(f"{what}: labels must be integers (class ids, or 0/1 per label)")
    y = y.long()
    if y.numel() and y.min() < 0:
        raise DataError(f"{what}: negative labels")
    return y


def labelled(source: Any, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and labels from an (images, labels) pair, a ``Dataset`` of (image, label) or a ``DataLoader``."""
    if isinstance(source, tuple | list) and len(source) == 2 and isinstance(source[0], torch.Tensor | np.ndarray):
        x = as_images(source[0], what)
        return x, as_labels(source[1], len(x), what)
    x = as_images(source, what)
    y = _collect(source, lambda item: item[1], what)
    return x, as_labels(y.reshape(len(x), -1).squeeze(1) if y.dim() > 1 else y, len(x), what)


def unlabelled_dataset(images: Any, val_images: Any = None) -> ImageDataset:
    """The TPP stage's data: ``images`` to train on; the pretext loss is measured before and after on
    ``val_images``, or on up to HELD_OUT of the images (evenly spaced) without them."""
    if isinstance(images, ImageDataset):
        return images
    x = as_images(images)
    held = as_images(val_images, "val_images") if val_images is not None else x[torch.from_numpy(
        subset(len(x), HELD_OUT))]
    none = torch.zeros(len(x), dtype=torch.long)
    splits = {"train": Split(x, none), "val": Split(held, none[:len(held)]), "test": Split(held, none[:len(held)])}
    return ImageDataset("images", splits, "multiclass", 2)


def labelled_dataset(data: Any, split: SplitConfig, num_classes: int | None = None) -> ImageDataset:
    """The fine-tuning stage's data: an :class:`ImageDataset`, a mapping of splits (``train`` and optionally
    ``val``, ``test``) or the training data alone. Each split is an (images, labels) pair, a ``Dataset`` or a
    ``DataLoader``; a missing ``val`` is drawn from ``train`` (``data.split``: stratified, seeded), a missing
    ``test`` is left to :func:`tppeft.evaluate` (the stage then tests the validation split)."""
    if isinstance(data, ImageDataset):
        return data
    parts = dict(data) if isinstance(data, Mapping) else {"train": data}
    unknown = sorted(set(parts) - set(SPLITS))
    if unknown or "train" not in parts:
        raise DataError(f"data: expected splits train[, val, test]; got {sorted(parts)}")
    splits = {s: Split(*labelled(parts[s], f"data['{s}']")) for s in SPLITS if s in parts}
    train = splits["train"]
    if "val" not in splits:
        chosen = draw(train.labels.numpy(), [split.val], split.seed) == 1
        if not chosen.any():
            raise DataError(f"data: {len(train)} training images are too few to draw a validation split")
        keep, val = torch.from_numpy(~chosen), torch.from_numpy(chosen)
        splits["train"] = Split(train.images[keep], train.labels[keep])
        splits["val"] = Split(train.images[val], train.labels[val])
    splits.setdefault("test", splits["val"])
    multilabel = splits["train"].labels.dim() == 2
    found = splits["train"].labels.shape[1] if multilabel else max(int(s.labels.max()) for s in splits.values()) + 1
    return ImageDataset("data", splits, "multilabel" if multilabel else "multiclass", num_classes or max(2, found))


def make_context(cfg: Config, backbone: Backbone, data: ImageDataset, log: Callable[[str], None]) -> Context:
    """The :class:`Context` of one API call: what ``prepare_context`` makes for a configuration, for a
    backbone and data given as objects. Global torch settings change only where the options ask."""
    check_available(cfg.log)
    device = resolve_device(cfg.device)
    if cfg.threads and device.type == "cpu":
        set_threads(cfg.threads)
    if cfg.train.deterministic:
        set_deterministic(True)
    task = task_for(cfg, data)
    task.select_metric()
    task.prepare(data, backbone.image_size)
    backbone.model.to(device)
    return Context(cfg, device, data.to(device), backbone, torch.tensor(backbone.mean, device=device),
                   torch.tensor(backbone.std, device=device), log, task, autocast_dtype(cfg.train.precision, device),
                   frozen_state_digest(backbone.model))
