"""Property tests: random valid configs survive validation, YAML and --set unchanged; a random invalid value
is refused with its key named. Values are drawn from each field's own type and constraints, so new keys are
covered without editing this file."""

from __future__ import annotations

import math
import types
import typing
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from tppeft.arms import registered_arms
from tppeft.config import Config, ConfigError, load_config
from tppeft.engine.config import results_identity
from tppeft.io import config_to_yaml

ARMS = [arm.name for arm in registered_arms() if arm.pattern is None]  # the families' names are templates
# Fields whose validators check more than their type says.
_SCALE = st.tuples(st.floats(0.01, 1.0), st.floats(0.01, 1.0)).map(lambda t: tuple(sorted(t)))
SPECIAL = {
    "arms": st.permutations(list(ARMS)).flatmap(lambda p: st.integers(1, len(p)).map(lambda n: p[:n])),
    "data.crop_scale": _SCALE,
    "pretext.views.global_scale": _SCALE,
    "pretext.views.local_scale": _SCALE,
    "backbone_pretrain.checkpoint_name": st.from_regex(r"[A-Za-z0-9._-]{1,12}", fullmatch=True),
    # cross-field rule: decoder_dim must be divisible by decoder_heads
    "pretext.decoder_dim": st.integers(1, 64).map(lambda k: 4 * k),
    "pretext.decoder_heads": st.sampled_from([1, 2, 4]),
    # NIfTI volumes: ordered pairs, positive spacings, fractions summing to 1, one axis code per axis
    "data.volume.window": st.tuples(st.floats(-2000, 0, exclude_max=True), st.floats(0, 2000)),
    "data.volume.percentiles": st.tuples(st.floats(0, 50, exclude_max=True), st.floats(50, 100)),
    "data.volume.spacing": st.none() | st.tuples(*[st.floats(0.1, 5.0)] * 3),
    "data.volume.split_fractions": st.sampled_from([(0.7, 0.1, 0.2), (0.5, 0.25, 0.25), (0.8, 0.1, 0.1)]),
    "data.volume.orientation": st.none() | st.permutations("RAS").map("".join),
    "backbone.std": st.none() | st.tuples(*[st.floats(0.01, 2.0)] * 3),
    # cross-field rule: a hand-set baseline_matched.extra_epochs leaves no stage cost to share
    "baseline_matched.stage_shared_by": st.just(1),
    # cross-field rule: a teacher temperature warm-up needs both its start and its length (or neither)
    "pretext.dino.warmup_teacher_temp": st.just(None),
    "pretext.dino.teacher_temp_warmup_epochs": st.just(0.0),
    # cross-field rule: a digest to check needs a checkpoint file, and backbone.checkpoint may be null here
    # (its values are tests/backbones/test_backbone.py's)
    "backbone.sha256": st.just(None),
    # cross-field rule: the 3D input depth is a multiple of the patch depth
    "backbone.patch_depth": st.just(4),
    "backbone.volume_depth": st.integers(1, 16).map(lambda k: 4 * k),
}


def _bounds(field) -> dict:
    out = {}
    for m in field.metadata:
        for name in ("gt", "ge", "lt", "le"):
            if getattr(m, name, None) is not None:
                out[name] = getattr(m, name)
    return out


def _strategy(ann, b: dict) -> st.SearchStrategy | None:
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin in (typing.Union, types.UnionType):
        inner = [_strategy(a, b) for a in args if a is not type(None)]
        if any(s is None for s in inner):
            return None
        return st.one_of(st.none(), *inner) if type(None) in args else st.one_of(*inner)
    if origin is typing.Literal:
        return st.sampled_from(args)
    if origin is list and typing.get_origin(args[0]) is typing.Literal:
        return st.lists(st.sampled_from(typing.get_args(args[0])), min_size=1, unique=True)
    if origin is tuple and all(a is float for a in args):
        return st.tuples(*[st.floats(-10, 10, allow_nan=False) for _ in args])
    if ann is bool:
        return st.booleans()
    if ann is int:
        lo = b["gt"] + 1 if "gt" in b else b.get("ge", -1000)
        hi = b["lt"] - 1 if "lt" in b else b.get("le", lo + 1000)
        return st.integers(lo, hi)
    if ann is float:
        lo, hi = b.get("gt", b.get("ge", -1e3)), b.get("lt", b.get("le", 1e3))
        return st.floats(lo, hi, exclude_min="gt" in b, exclude_max="lt" in b, allow_nan=False)
    if ann is str:
        return st.text(st.characters(min_codepoint=48, max_codepoint=122), min_size=1, max_size=12)
    return None


def _leaves(model: type[BaseModel] = Config, prefix: str = ""):
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            yield from _leaves(ann, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", field


LEAVES = dict(_leaves())


@st.composite
def valid_trees(draw) -> dict:
    tree: dict = {}
    for key, field in LEAVES.items():
        strategy = SPECIAL[key] if key in SPECIAL else _strategy(field.annotation, _bounds(field))
        if strategy is None or not draw(st.booleans()):
            continue  # keep the default
        node = tree
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        value = draw(strategy)
        node[leaf] = list(value) if isinstance(value, tuple) else value
    if "eva" in tree.get("arms", []) and tree.get("peft", {}).get("method", "lora") != "lora":
        tree["peft"]["method"] = "lora"  # cross-field rule: the eva arm initialises LoRA
    data = tree.get("data", {})
    if data.get("label_fraction") is not None and data.get("labels_per_class") is not None:
        del data["labels_per_class"]  # cross-field rule: one way of choosing the labelled subset
    return tree


def _set_args(tree: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in tree.items():
        if isinstance(v, dict):
            out += _set_args(v, f"{prefix}{k}.")
        else:
            out.append(f"{prefix}{k}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}")
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tree=valid_trees())
def test_random_valid_configs_round_trip(tree, tmp_path: Path):
    cfg = Config.model_validate(tree)
    path = tmp_path / "c.yaml"
    path.write_text(config_to_yaml(cfg))
    again = load_config(path)
    assert again == cfg and config_to_yaml(again) == config_to_yaml(cfg)
    assert load_config(None, _set_args(tree)) == cfg  # the same values given as --set overrides
    assert results_identity(again) == results_identity(cfg)


def _invalid(field) -> list:
    """Values the field must refuse."""
    ann, b = field.annotation, _bounds(field)
    # a mapping where a scalar belongs; a free-form mapping field (timm keyword arguments) gets a scalar instead
    bad: list = ["not-a-mapping"] if typing.get_origin(ann) is dict else [{"nested": 1}]
    if "gt" in b:
        bad.append(b["gt"])
    if "ge" in b:
        bad.append(b["ge"] - 1)
    if "lt" in b:
        bad.append(b["lt"])
    if typing.get_origin(ann) is typing.Literal:
        bad.append("no-such-choice")
    if ann in (int, float) or int in typing.get_args(ann) or float in typing.get_args(ann):
        bad.append("many")
    return bad


@settings(max_examples=60, deadline=None)
@given(key=st.sampled_from(sorted(LEAVES)), data=st.data())
def test_a_random_invalid_value_names_its_key(key, data):
    value = data.draw(st.sampled_from(_invalid(LEAVES[key])))
    if isinstance(value, float) and not math.isfinite(value):
        return
    text = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
    try:
        load_config(None, [f"{key}={text}"])
    except ConfigError as e:
        assert f"'{key}'" in str(e) and "\n" not in str(e)
    else:
        raise AssertionError(f"{key}={text} was accepted")
    try:
        load_config(None, [f"{key}_typo=1"])
    except ConfigError as e:
        assert f"unknown key '{key}_typo'" in str(e)
    else:
        raise AssertionError(f"{key}_typo was accepted")
