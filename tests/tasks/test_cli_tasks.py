"""End to end through the command line for the other task types: BUSI segmentation and AdrenalMNIST3D volumes,
each on a tiny budget of the real shared data with the bundled configs."""

import json

import pytest
from conftest import shared_file
from golden import check
from PIL import Image

from tppeft.cli import main


def _sets(*pairs: str) -> list[str]:
    return [a for s in pairs for a in ("--set", s)]


TINY = ("pretext.probe=false", "seeds=1", "pretext.epochs=1", "finetune.epochs=1", "threads=1")


@pytest.fixture(scope="module")
def busi_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("busi") / "run"
    data = shared_file("segmentation/busi/busi_256.npz")
    sets = _sets(f"data.path={data}", "data.limit=12", "pretext.batch_size=6", "finetune.batch_size=6", *TINY)
    assert main(["run", "busi", "-o", str(out), *sets]) == 0
    return out


def test_busi_summary_has_dice_as_primary_metric(busi_run):
    s = json.loads((busi_run / "summary.json").read_text())
    assert s["task"] == "segmentation" and s["primary_metric"] == "dice" and s["metrics"] == ["dice", "iou"]
    assert s["finetune"]["select_metric"] == "dice" and s["split_sizes"] == {"train": 12, "val": 12, "test": 12}
    for arm in ("baseline", "tpp"):
        run = s["arms"][arm]["runs"][0]
        assert 0 < run["test"]["dice"] <= 1 and 0 < run["test"]["iou"] <= run["test"]["dice"]
        assert set(s["arms"][arm]["mean"]) == {"dice", "iou"}
    assert s["arms"]["tpp"]["runs"][0]["pretext"]["loss_end"] > 0
    assert set(s["paired"]["tpp-baseline"]) == {"dice", "iou"}


def test_busi_numbers_equal_the_recorded_ones(busi_run):
    assert check("busi", busi_run) == []


def test_busi_report_shows_dice_and_the_example_figure(busi_run):
    report = (busi_run / "report.md").read_text()
    assert "test DICE" in report and "test IOU" in report and "test AUC" not in report
    assert "![examples](examples.png)" in report and "256x256" in report
    with Image.open(busi_run / "examples.png") as im:
        assert im.width > 3 * im.height // 4  # image, ground truth and two arms side by side
    assert (busi_run / "runs" / "tpp" / "seed0" / "finetuned" / "head.safetensors").is_file()


def test_adrenal_volume_run(tmp_path):
    data = shared_file("medmnist/adrenalmnist3d.npz")
    out = tmp_path / "adrenal"
    sets = _sets(f"data.path={data}", "data.limit=16", "task.slices=4", "pretext.batch_size=16",
                 "finetune.batch_size=8", *TINY)
    assert main(["run", "adrenalmnist3d", "-o", str(out), *sets]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["task"] == "volume" and s["primary_metric"] == "auc" and s["metrics"] == ["acc", "auc"]
    pretext = s["arms"]["tpp"]["runs"][0]["pretext"]
    assert pretext["steps"] == 16 * 4 // 16  # the TPP stage went over slices (64), not volumes (16)
    assert 0 <= s["arms"]["baseline"]["runs"][0]["test"]["auc"] <= 1
    assert "attention aggregation" in (out / "report.md").read_text()
    assert check("adrenal", out) == []


def test_select_metric_of_another_task_is_a_config_error(tmp_path, capsys):
    data = shared_file("segmentation/busi/busi_256.npz")
    assert main(["run", "busi", "-o", str(tmp_path / "x"),
                 *_sets(f"data.path={data}", "data.limit=4", "finetune.select_metric=auc")]) == 2
    assert "finetune.select_metric 'auc'" in capsys.readouterr().err


def test_busi_merged_export_keeps_the_decoder_as_a_file(busi_run, tmp_path, capsys):
    out = tmp_path / "merged"
    assert main(["export", str(busi_run), "-o", str(out), "--merged"]) == 0
    assert (out / "model.safetensors").is_file() and (out / "head.safetensors").is_file()
    assert "merged into the backbone" in capsys.readouterr().out
