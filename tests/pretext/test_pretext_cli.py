"""`tppeft run --set pretext.method=NAME` completes for every pretext task on a tiny budget."""

import json

import pytest

from tppeft.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["pretext.probe=false", "threads=1", "seeds=1", "arms=[tpp]", "data.limit=8", "pretext.epochs=2",
        "finetune.epochs=1", "pretext.batch_size=4", "finetune.batch_size=8"]


@pytest.mark.parametrize("method", ["mae", "simmim", "dino", "simclr", "featdistill"])
def test_run_completes_and_records_the_pretext_loss_curve(tmp_path, method, capsys):
    out = tmp_path / method
    args = [a for s in [*TINY, f"pretext.method={method}"] for a in ("--set", s)]
    assert main(["run", "-o", str(out), *args]) == 0
    run = json.loads((out / "summary.json").read_text())["arms"]["tpp"]["runs"][0]
    pre = run["pretext"]
    assert pre["method"] == method and pre["setup"].startswith(method)
    assert len(pre["train_loss_curve"]) == 2 and pre["steps"] == 4
    assert all(v == v and v > 0 for v in [pre["loss_start"], pre["loss_end"], *pre["train_loss_curve"]])
    assert run["backbone_unchanged"] and 0 <= run["test"]["auc"] <= 1
    lines = [json.loads(x) for x in (out / "runs" / "tpp" / "seed0" / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines if x["stage"] == "pretext" and "epoch" in x] == [1, 2]


def test_unknown_pretext_is_a_clear_error(tmp_path, capsys):
    assert main(["run", "-o", str(tmp_path / "x"), "--set", "pretext.method=jigsaw", "--set", "data.limit=8"]) == 2
    assert "pretext.method 'jigsaw' is unknown" in capsys.readouterr().err


def test_list_names_every_pretext(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert all(m in out.split() for m in ["mae", "simmim", "dino", "simclr", "featdistill"])
