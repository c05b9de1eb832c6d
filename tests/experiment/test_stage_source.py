"""`pretext.stage_from`: a stage made before (by `tppeft pretrain` or another comparison) serves a comparison's TPP
runs as the stage it would have made itself, and a stage made with another setting is refused before anything
runs."""

import json
import shutil

import numpy as np
import pytest
import torch
from conftest import tiny_config
from safetensors.torch import load_file

import tppeft
from tppeft.bundled import resolve
from tppeft.cli import main
from tppeft.options import ConfigError

SMALL = ["data.limit=32", "data.image_size=32", "peft.targets=[qkv]", "threads=1", "pretext.batch_size=8",
         "finetune.batch_size=8", "arms=[baseline,tpp]", "pretext.stage_seed=1", "pretext.epochs=2",
         "pretext.probe=true"]


def _args(*extra):
    return [a for s in [*tiny_config()[1], *SMALL, *extra] for a in ("--set", s)]


def _targets(folder):
    return {k: v for f in sorted(folder.glob("*.safetensors")) for k, v in load_file(f).items()}


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A stage made by `tppeft pretrain`, and a comparison (another label budget and fine-tuning length than
    the stage's config) that made the same stage itself."""
    root = tmp_path_factory.mktemp("stage_from")
    assert main(["pretrain", "-o", str(root / "pre"), *_args()]) == 0
    later = ("finetune.epochs=2", "data.label_fraction=0.5")
    assert main(["run", "-o", str(root / "own"), *_args(*later)]) == 0
    return root, later


def test_a_stage_made_before_serves_the_comparison_as_its_own_stage_would(made, capsys):
    root, later = made
    capsys.readouterr()
    for name, source in (("from_pre", root / "pre"), ("from_cmp", root / "own" / "runs" / "tpp" / "stage")):
        out = root / name
        assert main(["run", "-o", str(out), *_args(*later, f"pretext.stage_from={source}")]) == 0
        log = "".join(capsys.readouterr())
        assert log.count("takes the TPP stage of pretext.stage_from") == 1 and "pretext epoch" not in log
        stage = _targets(out / "runs" / "tpp" / "stage" / "target_params")
        theirs = _targets(source / "target_params")
        assert stage.keys() == theirs.keys() and all(torch.equal(stage[k], theirs[k]) for k in stage)
        summary = json.loads((out / "summary.json").read_text())
        own = json.loads((root / "own" / "summary.json").read_text())
        for arm in ("baseline", "tpp"):  # the same numbers as the comparison that made the stage itself
            assert [(r["val"], r["test"]) for r in summary["arms"][arm]["runs"]] == \
                [(r["val"], r["test"]) for r in own["arms"][arm]["runs"]]
        first, second = summary["arms"]["tpp"]["runs"]
        mine = own["arms"]["tpp"]["runs"][0]["pretext"]
        assert first["pretext"]["from"] == str(source) and first["pretext"]["shared"]["made_by_this_run"]
        assert not second["pretext"]["shared"]["made_by_this_run"]
        for key in ("loss_start", "loss_end", "train_loss_curve", "probe_before", "probe_after", "movement"):
            assert first["pretext"][key] == mine[key], key  # the probe measured again on this comparison's labels
        assert f"taken from {source}" in (out / "report.md").read_text()


def test_a_stage_made_otherwise_is_refused_before_anything_runs(made, tmp_path, capsys):
    root, _ = made
    pre = f"pretext.stage_from={root / 'pre'}"
    cases = [
        ((pre, "pretext.stage_seed=0"), "was made with seed 1; set pretext.stage_seed: 1"),
        ((pre, "peft.r=4"), "peft.r: 4 here, 8 there"),
        ((pre, "pretext.epochs=3"), "pretext.epochs: 3 here, 2 there"),
        ((pre, "data.augment=false"), "data.augment: False here, True there"),
        ((pre, "data.limit=24"), "was trained on other images than this comparison's stage would be (24 training"),
        ((f"pretext.stage_from={root / 'own'}",), "neither a `tppeft pretrain` folder"),
        ((f"pretext.stage_from={root / 'nowhere'}",), "is not a folder"),
        ((pre, "arms=[baseline,tpp,tpp_simclr]"), "one stage serves one TPP arm"),
    ]
    for i, (sets, message) in enumerate(cases):
        out = tmp_path / f"refused{i}"
        assert main(["run", "-o", str(out), *_args(*sets)]) == 2, sets
        assert message in capsys.readouterr().err, sets
        assert not out.exists()
    assert main(["pretrain", "-o", str(tmp_path / "pre"), *_args(pre)]) == 2
    assert "tppeft pretrain makes one" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="peft.r: 4 here, 8 there"):  # the Python API checks it too
        tppeft.run(None, tmp_path / "api", overrides=[*tiny_config()[1], *SMALL, pre, "peft.r=4"])
    assert not (tmp_path / "api").exists()


def test_a_comparison_made_from_a_stage_resumes_without_it(made, tmp_path, capsys):
    """Once taken in, the stage is the comparison's own: resuming needs neither the source nor a new check."""
    root, later = made
    source = tmp_path / "pre"
    shutil.copytree(root / "pre", source)
    out = tmp_path / "cmp"
    assert main(["run", "-o", str(out), *_args(*later, f"pretext.stage_from={source}")]) == 0
    shutil.rmtree(source)
    results = out / "results.jsonl"
    lines = results.read_text().splitlines()
    results.write_text("\n".join(lines[:-1]) + "\n")  # as if stopped before tpp seed 1 was recorded
    capsys.readouterr()
    assert main(["run", "--resume", str(out)]) == 0
    log = "".join(capsys.readouterr())
    assert "takes the TPP stage" not in log and log.count("fine-tunes from the shared TPP stage") == 1
    own = json.loads((root / "own" / "summary.json").read_text())
    runs = json.loads((out / "summary.json").read_text())["arms"]["tpp"]["runs"]
    assert [r["test"] for r in runs] == [r["test"] for r in own["arms"]["tpp"]["runs"]]


def _copy_of_bundled(path, change):
    """The bundled data file written to ``path`` with ``change`` applied to its arrays."""
    with np.load(resolve("bundled:breastmnist")) as npz:
        arrays = {k: npz[k].copy() for k in npz.files}
    change(arrays)
    np.savez(path, **arrays)
    return path


def test_a_stage_serves_other_labels_of_its_images_and_refuses_a_replaced_file(made, tmp_path, capsys):
    """The stage is matched by the checksum of the images it trained on: the same images under another path and
    other labels take it; a source whose data file changed since (same path, same config) is refused."""
    root, later = made
    record = json.loads((root / "pre" / "pretext.json").read_text())
    assert len(record["images_sha256"]) == 64
    flipped = _copy_of_bundled(tmp_path / "flipped.npz", lambda a: a.update(
        {k: 1 - v for k, v in a.items() if k.endswith("_labels")}))
    out = tmp_path / "relabelled"
    capsys.readouterr()
    assert main(["run", "-o", str(out), *_args(*later, f"data.path={flipped}",
                                                f"pretext.stage_from={root / 'pre'}")]) == 0
    assert "takes the TPP stage of pretext.stage_from" in "".join(capsys.readouterr())
    stage, theirs = _targets(out / "runs" / "tpp" / "stage" / "target_params"), _targets(root / "pre" / "target_params")
    assert all(torch.equal(stage[k], theirs[k]) for k in theirs)
    merged = tmp_path / "merged"  # classes merged or renamed in the config: the stage reads no labels either
    assert main(["run", "-o", str(merged), *_args(*later, "data.merge_classes={malignant: [0]}",
                                                   f"pretext.stage_from={root / 'pre'}")]) == 0
    summary = json.loads((merged / "summary.json").read_text())
    assert summary["class_names"][0] == "malignant" and summary["data"]["merge_classes"] == {"malignant": [0]}
    assert "merged by `data.merge_classes` (malignant = 0)" in (merged / "report.md").read_text()

    source = tmp_path / "pre_on_a_copy"  # the same stage, its config naming a copy of the data that later changed
    shutil.copytree(root / "pre", source)
    config = source / "config.yaml"
    data = "data:\n  path: bundled:breastmnist\n"
    assert config.read_text().count(data) == 1
    changed = tmp_path / "changed.npz"
    config.write_text(config.read_text().replace(data, f"data:\n  path: {changed}\n"))
    _copy_of_bundled(changed, lambda a: a["train_images"][0].__ifloordiv__(2))
    out = tmp_path / "replaced"
    assert main(["run", "-o", str(out), *_args(*later, f"data.path={changed}", f"pretext.stage_from={source}")]) == 2
    assert "was trained on other images than this comparison's stage would be" in capsys.readouterr().err
    assert not out.exists()


def test_a_stage_made_before_its_images_were_recorded_is_matched_by_path(made, tmp_path, capsys):
    """A stage whose record has no image checksum (made by an earlier version) must name the same data file."""
    root, later = made
    source = tmp_path / "old"
    shutil.copytree(root / "pre", source)
    record = source / "pretext.json"
    record.write_text(json.dumps({k: v for k, v in json.loads(record.read_text()).items() if k != "images_sha256"}))
    copy = _copy_of_bundled(tmp_path / "copy.npz", lambda a: None)
    out = tmp_path / "cmp"
    assert main(["run", "-o", str(out), *_args(*later, f"data.path={copy}", f"pretext.stage_from={source}")]) == 2
    err = capsys.readouterr().err
    assert f"data.path: '{copy}' here, 'bundled:breastmnist' there" in err and "matched by path" in err
    assert main(["run", "-o", str(out), *_args(*later, f"pretext.stage_from={source}")]) == 0
