"""Options of the training loop both stages share: the fine-tuning stage's schedule (``finetune.*``), how steps
run (``train.*``) and checkpoints (``checkpoint.*``). Torch-free: ``tppeft.config`` composes them."""

from __future__ import annotations

from collections.abc import Iterable
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, Field
from pydantic_core import to_jsonable_python

from tppeft.options import Section


class FinetuneConfig(Section):
    epochs: int = Field(6, gt=0, description="Fine-tuning epochs (identical for every arm).")
    lr: float = Field(1e-3, gt=0, description="Peak learning rate of target parameters and head.")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay.")
    batch_size: int = Field(32, gt=0, description="Images per step.")
    warmup_epochs: float = Field(1.0, ge=0, description="Linear warm-up length in epochs.")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="Cross-entropy label smoothing.")
    select_metric: Literal["auto", "auc", "acc", "dice", "iou", "loss"] = Field(
        "auto", description="Validation metric that picks the epoch whose weights are tested; `auto` = the "
        "task's primary metric (AUC for classification, Dice for segmentation)."
    )


class TrainConfig(Section):
    on_nonfinite: Literal["stop", "skip"] = Field(
        "stop",
        description="A NaN/inf loss or gradient: `stop` the run (its last good checkpoint is kept; the "
        "comparison goes on without it), or `skip` that update and count it in the run's metrics.",
    )
    deterministic: bool = Field(
        False, description="Call torch.use_deterministic_algorithms (on CUDA also sets "
        "CUBLAS_WORKSPACE_CONFIG); slower, and needed for bit-identical resumes on a GPU."
    )
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="Forward passes (training and evaluation) under bf16 autocast (`bf16`) or in float32 "
        "(`fp32`); weights, optimizer and losses stay float32. `auto` = bf16 on a CUDA GPU that supports it, "
        "fp32 on CPU (where bf16 matrix products are far slower than float32 on most processors). Also the "
        "precision of `tppeft backbone-pretrain`."
    )
    compile: bool = Field(
        False, description="`torch.compile` every transformer block (backbone and MAE decoder), once per run: "
        "pays on a GPU for runs of more than a few hundred steps (the first steps compile, tens of seconds); "
        "on CPU it needs a C++ compiler and rarely pays."
    )


class CheckpointConfig(Section):
    every_epochs: int = Field(
        1, ge=0, description="Checkpoint every N epochs of each stage; 0 = only at stage boundaries."
    )
    every_steps: int = Field(
        0, ge=0, description="Also checkpoint every N optimizer steps (0 = off); a resume continues mid-epoch."
    )
    keep_finished: bool = Field(
        False, description="Keep a run's checkpoints once its result is recorded (by default they are deleted; "
        "target parameters and fine-tuned weights always stay)."
    )


# Keys that change how a run is executed but not its results: they may differ on --resume. A section, or one key
# of a section (``backbone.sha256`` checks the backbone's file; the digest used is recorded either way).
RUNTIME_KEYS = ("threads", "checkpoint", "log", "backbone.sha256")
# How many seeds a comparison has changes no run's results: on --resume it may grow (more seeds, the finished
# runs and a shared TPP stage kept).
GROWING_KEYS = ("seeds",)


def is_runtime_key(name: str) -> bool:
    """Whether the dotted key ``name`` is, or lies inside, one of :data:`RUNTIME_KEYS`."""
    parts = name.split(".")
    return any(".".join(parts[:i]) in RUNTIME_KEYS for i in range(1, len(parts) + 1))


def results_identity(cfg: BaseModel, leave_out: Iterable[str] = ()) -> dict:
    """The config without :data:`RUNTIME_KEYS` and :data:`GROWING_KEYS`: what a checkpoint must agree with to be
    resumed from; also without ``leave_out`` (dotted names: a section, or one key of a section)."""
    whole = [k for k in (*RUNTIME_KEYS, *GROWING_KEYS) if "." not in k]
    identity = cfg.model_dump(mode="json", exclude=set(whole))
    for name in (*(k for k in RUNTIME_KEYS if "." in k), *leave_out):
        section, _, key = name.partition(".")
        if not key:
            identity.pop(section, None)
        elif isinstance(identity.get(section), dict):
            identity[section] = {k: v for k, v in identity[section].items() if k != key}
    return identity


class ListItems(dict):
    """In :func:`identity_defaults`: the defaults of each item of a list of sections (keys without a default left
    out); ``default`` is the list's own default."""

    def __init__(self, items: dict[str, Any], default: Any) -> None:
        super().__init__(items)
        self.default = default


def _sections(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The section class an annotation holds (``X``, ``X | None``, ``list[X]``) and whether it is a list of them."""
    if get_origin(annotation) in (Union, UnionType):
        inner = [a for a in get_args(annotation) if a is not type(None)]
        return _sections(inner[0]) if len(inner) == 1 else (None, False)
    if get_origin(annotation) is list and get_args(annotation):
        item = get_args(annotation)[0]
        return (item, True) if isinstance(item, type) and issubclass(item, BaseModel) else (None, False)
    return (annotation, False) if isinstance(annotation, type) and issubclass(annotation, BaseModel) else (None, False)


def _fill_lists(tree: dict[str, Any], cls: type[BaseModel]) -> dict[str, Any]:
    for name, info in cls.model_fields.items():
        section, many = _sections(info.annotation)
        if section is None or name not in tree:
            continue
        if many:
            items = {n: to_jsonable_python(f.get_default(call_default_factory=True))
                     for n, f in section.model_fields.items() if not f.is_required()}
            tree[name] = ListItems(items, tree[name])
        elif isinstance(tree[name], dict):
            _fill_lists(tree[name], section)
    return tree


def identity_defaults(cls: type[BaseModel]) -> dict[str, Any]:
    """:func:`results_identity` of ``cls``'s defaults, with every list of sections (e.g. ``pretext.data``) a
    :class:`ListItems` of one item's defaults: what a stored identity lacks is filled from it, in list items too."""
    return _fill_lists(results_identity(cls()), cls)
