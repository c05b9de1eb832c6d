"""Typed experiment configuration: one YAML file per experiment plus ``--set key=value`` overrides.

Each section's options are declared beside the code they configure, in torch-free modules: ``config.py`` of
``data/``, ``backbones/``, ``targets/`` (one per method family), ``pretext/`` (one per task), ``tasks/`` and
``engine/``, and the module of the arm they configure (``arms/``); this module composes them into
:class:`Config` and reads, overrides, validates and documents it. Every field carries a ``description``: it is
the documentation (``tppeft config --docs`` prints it). Unknown keys and wrong types are errors, raised as
:class:`ConfigError` with the offending key.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticUndefined

from tppeft.arms import find_arm, get_arm, list_arms
from tppeft.arms.baseline_matched import BaselineMatchedConfig
from tppeft.arms.eva import EvaArmConfig
from tppeft.arms.full_finetune import FullFinetuneConfig
from tppeft.backbone_pretrain.config import BackbonePretrainConfig
from tppeft.backbones.config import BackboneConfig
from tppeft.data.config import DataConfig
from tppeft.engine.config import CheckpointConfig, FinetuneConfig, TrainConfig
from tppeft.errors import did_you_mean
from tppeft.options import MOVED_KEY, ConfigError, Section
from tppeft.pretext.config import PretextConfig
from tppeft.targets.config import PeftConfig
from tppeft.tasks.config import TaskConfig
from tppeft.tracking.config import LogConfig


class Config(Section):
    seeds: int = Field(3, gt=0, description="Number of seeds (0..seeds-1); every arm runs every seed.")
    arms: list[str] = Field(
        ["baseline", "tpp"], min_length=1,
        description=f"Arms of the comparison, in run order; any of {', '.join(list_arms())} (`tpp_<pretext>` "
        "names a pretext task, e.g. `tpp_simclr`; `tppeft list -v` says what each arm is).",
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="`auto` = cuda when available.")
    threads: int | None = Field(None, gt=0, description="CPU threads for torch; null = all cores. Another "
                                  "count can change CPU results in the last bits (sums in another order; a SimCLR "
                                  "stage ended at held-out loss 4.25127 with 1 thread, 4.25131 with 2): keep it fixed "
                                  "within a study.")
    eval_batch_size: int = Field(256, gt=0, description="Images per evaluation batch.")
    data: DataConfig = Field(default_factory=DataConfig)
    backbone: BackboneConfig = Field(default_factory=BackboneConfig)
    peft: PeftConfig = Field(default_factory=PeftConfig)
    pretext: PretextConfig = Field(default_factory=PretextConfig)
    task: TaskConfig = Field(default_factory=TaskConfig)
    finetune: FinetuneConfig = Field(default_factory=FinetuneConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    baseline_matched: BaselineMatchedConfig = Field(default_factory=BaselineMatchedConfig)
    eva: EvaArmConfig = Field(default_factory=EvaArmConfig)
    full_finetune: FullFinetuneConfig = Field(default_factory=FullFinetuneConfig)
    backbone_pretrain: BackbonePretrainConfig = Field(default_factory=BackbonePretrainConfig)
    log: LogConfig = Field(default_factory=LogConfig)

    @field_validator("arms")
    @classmethod
    def _check_arms(cls, v: list[str]) -> list[str]:
        unknown = [a for a in v if find_arm(a) is None]
        if unknown:
            hint = "".join(did_you_mean(a, list_arms()) for a in unknown)
            raise ValueError(f"unknown arm(s) {unknown}{hint}; choose from {list(list_arms())}")
        if len(set(v)) != len(v):
            raise ValueError("arms must not repeat")
        return v

    @model_validator(mode="after")
    def _check_arm_needs(self) -> Config:
        for name in self.arms:
            arm = get_arm(name)
            problem = arm.check(self) if arm.check is not None else None
            if problem:
                raise ValueError(problem)
        return self


def _format_error(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            lines.append(f"{source}: unknown key '{key}'{_key_hint(key)}")
        elif e["type"] == MOVED_KEY:
            lines += [f"{source}: {key}.{old} moved to {new}" for old, new in e["ctx"]["moved"]]
        else:
            got = e.get("input")
            shown = "" if isinstance(got, dict) else f" (got {got!r})"  # a section-level check: its message says it
            # a check of ours: its own message, without pydantic's "Value error, " before it
            own = e["type"] == "value_error" and "error" in e.get("ctx", {})
            where = f"'{key}': " if key else ""  # a check across sections has no one key
            lines.append(f"{source}: {where}{e['ctx']['error'] if own else e['msg']}{shown}")
    if any(e["type"] == "extra_forbidden" for e in err.errors()):
        lines[-1] += " (`tppeft config --docs` lists every key)"
    return "; ".join(lines)


def _key_hint(key: str) -> str:
    """`` (did you mean ...?)`` for an unknown dotted key: the same key name in another section, else the
    closest known key."""
    key = re.sub(r"\.\d+(?=\.|$)", "[]", key)  # backbone_pretrain.sources.0.x -> backbone_pretrain.sources[].x
    if "." not in key:  # a top-level key or section
        return did_you_mean(key, Config.model_fields)
    known = [k for k, *_ in iter_fields()]
    leaf = key.rsplit(".", 1)[-1]
    elsewhere = [k for k in known if k.rsplit(".", 1)[-1] == leaf]
    if elsewhere:
        return f" (did you mean {' or '.join(repr(k) for k in elsewhere[:3])}?)"
    return did_you_mean(key, known)


def _yaml_problem(e: yaml.YAMLError) -> str:
    """A YAML error in one line: what and where."""
    mark = getattr(e, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return where + " ".join(str(getattr(e, "problem", None) or e).split())


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b=value`` into (["a", "b"], value), the value read as YAML."""
    if "=" not in text:
        raise ConfigError(f"--set '{text}': expected KEY=VALUE, e.g. --set finetune.epochs=5")
    key, raw = text.split("=", 1)
    if not key.strip():
        raise ConfigError(f"--set '{text}': empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(f"--set '{text}': value is not valid YAML ({_yaml_problem(e)})") from None
    return key.strip().split("."), value


def apply_override(tree: dict, keys: list[str], value: Any) -> None:
    node = tree
    for k in keys[:-1]:
        child = node.setdefault(k, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {'.'.join(keys)}: '{k}' is not a section")
        node = child
    node[keys[-1]] = value


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> Config:
    """Read a YAML file (or the defaults when ``path`` is None), apply overrides, validate."""
    tree: dict = {}
    source = "defaults"
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise ConfigError(f"config file '{path}' does not exist")
        try:
            tree = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML ({_yaml_problem(e)})") from None
        if not isinstance(tree, dict):
            raise ConfigError(f"{path}: expected a mapping of keys at the top level")
    for text in overrides:
        apply_override(tree, *parse_override(text))
        source = f"{source} + --set"
    return config_from_tree(tree, source)


def config_from_tree(tree: dict, source: str = "config") -> Config:
    """Validate a mapping of keys (as a YAML file holds them); errors name ``source`` and the key."""
    try:
        return Config.model_validate(tree)
    except ValidationError as e:
        raise ConfigError(_format_error(e, source)) from None



def iter_fields(model: type[BaseModel] = Config, prefix: str = ""):
    """Yield (dotted key, type text, default, description) for every leaf key.

    A list of sections (``backbone_pretrain.sources``) yields the list itself, then its items' keys as ``key[].sub``.
    """
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            yield from iter_fields(ann, f"{prefix}{name}.")
            continue
        item = get_args(ann)[0] if get_origin(ann) is list and get_args(ann) else None
        default = field.get_default(call_default_factory=True)
        if default is PydanticUndefined:
            default = "required"
        if isinstance(item, type) and issubclass(item, BaseModel):
            shown = [d.model_dump(mode="json") for d in default]
            yield f"{prefix}{name}", f"list of {item.__name__}", shown, field.description or ""
            yield from iter_fields(item, f"{prefix}{name}[].")
            continue
        type_text = str(ann).replace("typing.", "")
        if isinstance(ann, type):
            type_text = ann.__name__
        yield f"{prefix}{name}", type_text.replace(" | ", " or "), default, field.description or ""


def docs_markdown() -> str:
    """The config reference as a Markdown table."""
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for key, type_text, default, desc in iter_fields():
        shown = yaml.safe_dump(default, default_flow_style=True, width=10_000, sort_keys=False)
        shown = shown.strip().removesuffix("...").strip()
        rows.append(f"| `{key}` | `{type_text}` | `{shown}` | {desc} |")
    return "\n".join(rows)
