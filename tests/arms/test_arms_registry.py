"""The registry of arms: what it lists and documents, how it refuses unknown names, each arm's model and epochs
rule, and an arm added by a test that the configuration accepts and a comparison runs."""

import json
from pathlib import Path

import pytest
from conftest import tiny_config

import tppeft.arms.base as arms_base
import tppeft.experiment.builders as builders
from tppeft.arms import Arm, arms_markdown, get_arm, list_arms, register_arm, registered_arms
from tppeft.cli import main
from tppeft.config import Config, ConfigError, load_config
from tppeft.experiment.builders import build_arm_model, builder_names, frozen, register_builder
from tppeft.experiment.context import prepare_context

ARMS_PAGE = Path(__file__).resolve().parents[2] / "docs" / "arms.md"
BUILT_IN = ["baseline", "baseline_matched", "eva", "full_finetune", "linear_probe", "tpp", "tpp_<pretext>"]
SMALL = ["seeds=1", "data.limit=32", "data.image_size=32", "peft.targets=[qkv]", "eva.batch_size=16", "eva.rho=1",
         "threads=1", "finetune.epochs=1", "pretext.epochs=1", "finetune.batch_size=16", "pretext.batch_size=16"]


@pytest.fixture(scope="module")
def ctx():
    return prepare_context(load_config(None, SMALL), log=lambda s: None)


@pytest.fixture()
def toy(monkeypatch):
    """A registered arm of this test only, with its own model builder: a linear probe with one fine-tuning epoch
    less than the budget's."""
    monkeypatch.setattr(arms_base, "_ARMS", dict(arms_base._ARMS))
    monkeypatch.setattr(builders, "_BUILDERS", dict(builders._BUILDERS))

    def build(ctx, seed):
        run, _ = frozen(ctx, seed)
        return run, {"toy_note": f"built for seed {seed}"}

    register_builder("toy_model", build)
    return register_arm(Arm(
        name="toy", help="a test's own arm", trains="nothing but the head", model="toy_model", carries_targets=False,
        extra_epochs=lambda budget: budget["extra_epochs"] - 1,
        check=lambda cfg: "toy needs seeds >= 2" if cfg.seeds < 2 else None,
    ))


def test_registry_lists_every_arm_with_help(capsys):
    assert list(list_arms()) == BUILT_IN
    assert all(help_text.strip() for help_text in list_arms().values())
    assert main(["list", "-v"]) == 0
    out = capsys.readouterr().out.splitlines()
    arms = out[out.index("arms:") + 1:][:len(BUILT_IN)]
    assert arms == [f"  {name}\t{help_text}" for name, help_text in list_arms().items()]


def test_docs_arms_table_is_the_registry():
    page = ARMS_PAGE.read_text()
    block = page.split("<!-- arms:start -->\n")[1].split("\n<!-- arms:end -->")[0]
    assert block == arms_markdown(), "docs/arms.md's arms table is stale: paste tppeft.arms.arms_markdown() " \
        "between its markers"
    assert all(f"| `{name}` |" in block for name in BUILT_IN)


def test_every_arm_option_section_is_part_of_the_config():
    sections = {arm.options for arm in registered_arms() if arm.options}
    assert sections == {"eva", "full_finetune", "baseline_matched"}
    assert sections <= set(Config.model_fields)


def test_unknown_arms_are_refused_with_the_choices():
    with pytest.raises(ConfigError, match=r"unknown arm 'nosuch'; choose from \['baseline'"):
        get_arm("nosuch")
    for name in ("tpp_<pretext>", "tpp_", "tpp-simclr", "TPP"):
        with pytest.raises(ConfigError, match="unknown arm"):
            get_arm(name)
    with pytest.raises(ConfigError, match=r"unknown arm\(s\) \['nosuch'\]; choose from"):
        load_config(None, ["arms=[baseline, nosuch]"])
    with pytest.raises(ValueError, match="already registered"):
        register_arm(get_arm("baseline"))


def test_a_family_member_carries_its_own_name_and_pretext():
    cfg = load_config(None, ["pretext.epochs=4"])
    variant = get_arm("tpp_simclr")
    assert variant.name == "tpp_simclr" and variant.pattern is None and variant.has_tpp_stage
    pretext = variant.pretext_config(cfg.pretext)
    assert pretext.method == "simclr" and pretext.epochs == 4 and cfg.pretext.method == "mae"
    assert get_arm("tpp").pretext_config(cfg.pretext) is cfg.pretext
    assert [a for a in BUILT_IN if get_arm(a.replace("<pretext>", "dino")).has_tpp_stage] == ["tpp", "tpp_<pretext>"]


def test_every_arm_names_a_registered_model_builder(ctx):
    assert {arm.model for arm in registered_arms()} == set(builder_names())
    stray = Arm(name="stray", help="-", trains="-", model="nosuch")
    with pytest.raises(ValueError, match="arm 'stray' names model builder 'nosuch', which is not registered"):
        build_arm_model(ctx, stray, seed=0)
    with pytest.raises(ValueError, match="already registered"):
        register_builder("targets", frozen)


@pytest.mark.parametrize("name", [a.replace("<pretext>", "simclr") for a in BUILT_IN])
def test_each_arm_builds_what_it_states(ctx, name):
    arm = get_arm(name)
    run, info = build_arm_model(ctx, arm, seed=0)
    assert (run.method is not None) == arm.carries_targets
    trainable = {n for n, p in run.vit.named_parameters() if p.requires_grad}
    assert trainable == set(run.target_names) and run.frozen_unchanged()
    assert (name == "eva") == ("eva_ranks" in info)
    if name == "linear_probe":
        assert run.target_names == []
    if name == "full_finetune":
        assert not run.added and run.lr_scale == ctx.cfg.full_finetune.lr_scale
        assert len(run.target_names) == len(list(run.vit.parameters()))


@pytest.mark.parametrize("name", [a.replace("<pretext>", "simclr") for a in BUILT_IN])
def test_each_arm_epochs_rule(name):
    arm = get_arm(name)
    budget = {"extra_epochs": 4}
    assert arm.finetune_epochs(6, budget) == (10 if name == "baseline_matched" else 6)
    per_seed = {**budget, "extra_epochs_per_seed": {"0": 4, "1": 5}}  # whole volumes: each seed its own
    assert arm.finetune_epochs(6, per_seed, seed=1) == (11 if name == "baseline_matched" else 6)
    assert arm.uses_budget == (name == "baseline_matched")
    if arm.uses_budget:
        with pytest.raises(ValueError, match="needs the matched budget"):
            arm.finetune_epochs(6)
    else:
        assert arm.finetune_epochs(6) == 6


def test_an_arm_states_what_it_needs_of_the_config():
    with pytest.raises(ConfigError, match="arm 'eva' initialises LoRA and needs peft.method=lora"):
        load_config(None, ["arms=[eva]", "peft.method=ia3"])
    assert load_config(None, ["arms=[baseline]", "peft.method=ia3"]).arms == ["baseline"]


def test_a_registered_arm_is_validated_and_runs(toy, tmp_path):
    assert "toy" in list_arms()
    assert load_config(None, ["arms=[baseline, toy]"]).arms == ["baseline", "toy"]
    with pytest.raises(ConfigError, match="toy needs seeds >= 2"):
        load_config(None, ["arms=[toy]", "seeds=1"])
    _, sets = tiny_config(arms="[toy]")
    sets += ["data.limit=32", "data.image_size=32", "threads=1", "baseline_matched.extra_epochs=3"]
    out = tmp_path / "run"
    assert main(["run", "-o", str(out), *[a for s in sets for a in ("--set", s)]]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert list(s["arms"]) == ["toy"] and s["toy"]["extra_epochs"] == 3  # the budget it used is recorded
    assert [r["seed"] for r in s["arms"]["toy"]["runs"]] == [0, 1]
    record = s["arms"]["toy"]["runs"][0]
    assert record["finetune_epochs"] == 1 + 3 - 1 and record["toy_note"] == "built for seed 0"
    assert record["target_params"] == 0 and record["backbone_unchanged"] is True
    assert record["pretext"] is None and s["paired"] == {}
