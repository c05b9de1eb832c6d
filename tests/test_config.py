import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tppeft.bundled import bundled_configs
from tppeft.config import Config, ConfigError, docs_markdown, iter_fields, load_config, parse_override

CONFIG_PAGE = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
REQUIRED_KEYS = ["data.path", "seeds", "arms", "peft.method", "peft.r", "pretext.method", "pretext.epochs",
                 "finetune.epochs", "backbone.name", "backbone.checkpoint", "device"]


def test_defaults_are_valid_and_have_required_keys():
    cfg = load_config()
    assert cfg.arms == ["baseline", "tpp"] and cfg.seeds == 3
    keys = {k for k, *_ in iter_fields()}
    assert set(REQUIRED_KEYS) <= keys


def test_overrides_are_read_as_yaml():
    cfg = load_config(None, ["arms=[tpp]", "finetune.lr=3e-4", "peft.targets=[qkv]", "data.limit=null"])
    assert cfg.arms == ["tpp"] and cfg.finetune.lr == pytest.approx(3e-4) and cfg.peft.targets == ["qkv"]
    assert parse_override("a.b.c=[1, 2]") == (["a", "b", "c"], [1, 2])


def test_yaml_file_and_override_precedence(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("seeds: 5\nfinetune:\n  epochs: 7\n")
    cfg = load_config(p, ["finetune.epochs=2"])
    assert cfg.seeds == 5 and cfg.finetune.epochs == 2


@pytest.mark.parametrize("sets, needle", [
    (["finetune.epochz=3"], "unknown key 'finetune.epochz'"),
    (["bogus=1"], "unknown key 'bogus'"),
    (["seeds=three"], "'seeds'"),
    (["peft.r=0"], "'peft.r'"),
    (["pretext.mask_ratio=1.5"], "'pretext.mask_ratio'"),
    (["finetune.epochs=-1"], "'finetune.epochs'"),
    (["arms=[baseline, magic]"], "unknown arm"),
    (["device=tpu"], "'device'"),
    (["seeds"], "expected KEY=VALUE"),
])
def test_bad_config_is_a_clear_error(sets, needle):
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(").replace("[", r"\[")):
        load_config(None, sets)


def test_a_check_of_ours_says_its_own_message_and_a_check_across_sections_names_no_key():
    with pytest.raises(ConfigError) as err:
        load_config(None, ["arms=[eva]", "peft.method=ia3"])
    assert str(err.value) == ("defaults + --set + --set: arm 'eva' initialises LoRA and needs peft.method=lora "
                              "(got 'ia3')")
    with pytest.raises(ConfigError) as err:
        load_config(None, ["arms=[magic]"])
    assert str(err.value).startswith("defaults + --set: 'arms': unknown arm(s) ['magic']")


def test_bad_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)


def test_every_key_is_documented_here_and_on_the_config_page():
    docs = docs_markdown()
    page = CONFIG_PAGE.read_text()
    for key, _, _, desc in iter_fields():
        assert desc, f"{key} has no description"
        assert f"`{key}`" in docs
    block = page.split("<!-- config-reference:start -->\n")[1].split("\n<!-- config-reference:end -->")[0]
    assert block == docs, "docs/configuration.md is stale: paste `tppeft config --docs` between its markers"


def test_config_roundtrip_through_yaml(tmp_path):
    from tppeft.io import config_to_yaml
    cfg = load_config(None, ["seeds=4", "peft.targets=[qkv, fc2]"])
    p = tmp_path / "r.yaml"
    p.write_text(config_to_yaml(cfg))
    assert load_config(p) == cfg
    assert Config() == load_config()


def test_reading_a_config_needs_no_torch():
    code = "import sys, tppeft.config; tppeft.config.load_config(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_every_registered_option_model_is_part_of_its_section():
    from tppeft.config import PeftConfig, PretextConfig, TaskConfig
    from tppeft.pretext import PRETEXTS
    from tppeft.targets import METHODS
    from tppeft.tasks import TASK_TYPES

    for registry, section in ((METHODS, PeftConfig), (PRETEXTS, PretextConfig), (TASK_TYPES, TaskConfig)):
        composed = set(section.__mro__) | {f.annotation for f in section.model_fields.values()}
        for name, entry in registry.items():
            assert entry.options is None or entry.options in composed, f"{name}: {entry.options} is not in {section}"


@pytest.mark.parametrize("name", sorted(bundled_configs()))
def test_every_bundled_config_loads(name):
    """Every bundled config is valid as shipped (one that is only ever run on a GPU is checked here too)."""
    cfg = load_config(bundled_configs()[name], [])
    assert cfg.seeds >= 1 and cfg.arms
    # YAML keeps the last of two equal keys without a word: a second `data:` would hide the first silently

    class Strict(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            keys = [self.construct_object(k, deep=deep) for k, _ in node.value]
            assert len(keys) == len(set(keys)), f"{name}: a key given twice in one mapping: {keys}"
            return super().construct_mapping(node, deep=deep)

    yaml.load(Path(bundled_configs()[name]).read_text(), Loader=Strict)
