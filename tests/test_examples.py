"""The scripts in examples/ run as they are, on a tiny image folder."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest
from conftest import write_image_folder

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("examples") / "pets", counts=(8, 3, 3))


def _main(script: str):
    return runpy.run_path(str(EXAMPLES / script))["main"]


def test_tpp_then_finetuning_on_a_folder(folder, tmp_path, capsys, one_thread):
    test = _main("tpp_on_image_folder.py")([str(folder), "--epochs", "2", "--image-size", "32",
                                            "--output", str(tmp_path / "tpp")])
    assert set(test) == {"acc", "auc", "loss"} and test["auc"] > 0.9  # the classes differ in brightness
    assert (tmp_path / "tpp" / "target_params" / "adapter_model.safetensors").is_file()
    assert "validation AUC per epoch" in capsys.readouterr().out


def test_tpp_inside_your_own_loop(folder, one_thread):
    loss = _main("tpp_in_your_loop.py")([str(folder / "train"), "--epochs", "1", "--image-size", "32"])
    assert 0 < loss < 5


def test_loading_the_result_with_peft(folder, tmp_path, one_thread):
    difference = _main("load_with_peft.py")([str(folder), str(tmp_path / "adapters"), "--epochs", "1"])
    assert difference == 0.0 and (tmp_path / "adapters" / "adapter_config.json").is_file()


def test_examples_are_scripts():
    for script in EXAMPLES.glob("*.py"):
        text = script.read_text()
        assert text.startswith('"""') and 'if __name__ == "__main__":' in text  # python examples/<name>.py
