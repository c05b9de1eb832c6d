"""`pretext.stage_seed`: one TPP stage for the whole comparison, made once and fine-tuned from by every seed."""

import json

import torch
from conftest import tiny_config
from safetensors.torch import load_file

from tppeft.cli import main
from tppeft.experiment.comparison import run_seconds

SMALL = ["data.limit=32", "data.image_size=32", "peft.targets=[qkv]", "threads=1", "pretext.batch_size=8",
         "finetune.batch_size=8", "arms=[baseline,tpp]"]


def _run(out, *extra):
    sets = [*tiny_config()[1], *SMALL, *extra]
    assert main(["run", "-o", str(out), *(a for s in sets for a in ("--set", s))]) == 0
    return json.loads((out / "summary.json").read_text())


def _targets(folder):
    files = sorted(folder.glob("*.safetensors"))
    assert files, f"no target parameters in {folder}"
    return {k: v for f in files for k, v in load_file(f).items()}


def test_every_seed_fine_tunes_from_the_one_stage_of_the_stage_seed(tmp_path, capsys):
    shared = _run(tmp_path / "shared", "seeds=3", "pretext.stage_seed=1")
    captured = capsys.readouterr()
    log = captured.out + captured.err
    runs = shared["arms"]["tpp"]["runs"]
    assert [r["pretext"]["shared"] for r in runs] == [
        {"seed": 1, "folder": "tpp/stage", "made_by_this_run": seed == 0} for seed in range(3)]
    assert len({(r["pretext"]["loss_start"], r["pretext"]["loss_end"]) for r in runs}) == 1
    assert log.count("makes the shared TPP stage") == 1 and log.count("fine-tunes from the shared TPP stage") == 2
    stage = tmp_path / "shared" / "runs" / "tpp" / "stage"
    assert not (tmp_path / "shared" / "runs" / "tpp" / "seed0" / "target_params").exists()
    assert len(list((stage / "checkpoints" / "pretext").glob("ckpt-*"))) == 1  # the finished stage's last one
    # the shared stage is the stage seed 1 makes for itself without sharing, bit for bit
    own = _run(tmp_path / "own", "seeds=2")
    mine, theirs = _targets(stage / "target_params"), _targets(tmp_path / "own" / "runs" / "tpp" / "seed1" /
                                                              "target_params")
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert runs[1]["pretext"]["loss_end"] == own["arms"]["tpp"]["runs"][1]["pretext"]["loss_end"]
    # and the stage `tppeft pretrain` makes with the same config: its seed is the config's stage seed
    sets = [*tiny_config()[1], *SMALL, "pretext.stage_seed=1"]
    assert main(["pretrain", "-o", str(tmp_path / "pre"), *(a for s in sets for a in ("--set", s))]) == 0
    assert json.loads((tmp_path / "pre" / "command.json").read_text())["seed"] == 1
    alone = _targets(tmp_path / "pre" / "target_params")
    assert alone.keys() == mine.keys() and all(torch.equal(mine[k], alone[k]) for k in mine)
    # seed 0 fine-tuned from seed 1's stage, so it differs from seed 0 with its own; the baselines are the same
    assert runs[0]["val"] != own["arms"]["tpp"]["runs"][0]["val"]
    assert shared["arms"]["baseline"]["runs"][0]["val"] == own["arms"]["baseline"]["runs"][0]["val"]
    report = (tmp_path / "shared" / "report.md").read_text()
    assert "One TPP stage, made with seed 1 (`pretext.stage_seed`" in report
    assert "One TPP stage" not in (tmp_path / "own" / "report.md").read_text()


def test_a_part_or_a_resumed_comparison_makes_the_stage_once(tmp_path, capsys):
    sets = [*tiny_config()[1], *SMALL, "pretext.stage_seed=0"]
    args = [a for s in sets for a in ("--set", s)]
    part = tmp_path / "part"
    assert main(["run", "-o", str(part), "--only", "tpp:1", *args]) == 0  # the stage's own seed is not in it
    (run,) = json.loads((part / "summary.json").read_text())["arms"]["tpp"]["runs"]
    assert run["pretext"]["shared"] == {"seed": 0, "folder": "tpp/stage", "made_by_this_run": True}
    out = tmp_path / "whole"
    assert main(["run", "-o", str(out), *args]) == 0
    results = out / "results.jsonl"
    lines = results.read_text().splitlines()
    results.write_text("\n".join(lines[:-1]) + "\n")  # as if stopped before tpp seed 1 was recorded
    capsys.readouterr()
    assert main(["run", "--resume", str(out)]) == 0
    captured = capsys.readouterr()
    log = captured.out + captured.err
    assert "makes the shared TPP stage" not in log and log.count("fine-tunes from the shared TPP stage") == 1
    runs = json.loads((out / "summary.json").read_text())["arms"]["tpp"]["runs"]
    assert [r["pretext"]["shared"]["made_by_this_run"] for r in runs] == [True, False]


def test_a_shared_stage_counts_in_the_seconds_of_the_run_that_made_it_only():
    ft = {"seconds": 30.0}
    made, read = ({"seconds": 50.0, "shared": {"made_by_this_run": m}} for m in (True, False))
    assert run_seconds(10.0, ft, made) == 80.0 and run_seconds(10.0, ft, read) == 30.0


def test_the_jobs_of_a_comparison_share_one_stage_in_its_folder(tmp_path):
    sets = [*tiny_config()[1], *SMALL, "seeds=3", "pretext.stage_seed=0", "arms=[tpp]"]  # 3 workers, not 6
    out = tmp_path / "jobs"
    assert main(["run", "-o", str(out), "--jobs", "2", *(a for s in sets for a in ("--set", s))]) == 0
    runs = json.loads((out / "summary.json").read_text())["arms"]["tpp"]["runs"]
    made = [r["pretext"]["shared"]["made_by_this_run"] for r in runs]
    assert made.count(True) == 1 and made[2] is False  # seeds 0 and 1 start together: either may make it
    assert (out / "runs" / "tpp" / "stage" / "target_params").is_dir() and not (out / "parts").exists()


def test_pretrain_takes_its_seed_from_the_flag_then_the_stage_seed():
    from argparse import Namespace

    from tppeft.cli import _pretrain_seed
    from tppeft.config import load_config

    shared, plain = load_config(None, ["pretext.stage_seed=3"]), load_config(None, [])
    assert _pretrain_seed(Namespace(seed=None), shared) == 3 and _pretrain_seed(Namespace(seed=None), plain) == 0
    assert _pretrain_seed(Namespace(seed=5), shared) == 5


def test_a_finished_comparison_gains_seeds_keeping_its_runs_and_its_stage(tmp_path, capsys):
    sets = [*tiny_config()[1], *SMALL, "pretext.stage_seed=0"]
    args = [a for s in sets for a in ("--set", s)]
    out = tmp_path / "grown"
    assert main(["run", "-o", str(out), "--set", "seeds=2", *args]) == 0
    before = json.loads((out / "summary.json").read_text())
    stage = sorted((out / "runs" / "tpp" / "stage" / "checkpoints" / "pretext").glob("ckpt-*"))
    made = [p.stat().st_mtime_ns for p in stage]
    capsys.readouterr()
    assert main(["run", "--resume", str(out), "--set", "seeds=3"]) == 0
    captured = capsys.readouterr()
    log = captured.out + captured.err
    assert "adding seed(s) 2..2 to the comparison of 2 seed(s)" in log and "makes the shared TPP stage" not in log
    assert log.count("== run ") == 2  # only the new seed's runs were made
    assert [p.stat().st_mtime_ns for p in stage] == made
    after = json.loads((out / "summary.json").read_text())
    assert after["seeds"] == [0, 1, 2] and after["arms"]["tpp"]["n"] == 3
    for arm in ("baseline", "tpp"):
        assert after["arms"][arm]["runs"][:2] == before["arms"][arm]["runs"]
    assert after["arms"]["tpp"]["runs"][2]["pretext"]["shared"]["made_by_this_run"] is False
    assert "seeds: 3" in (out / "config.yaml").read_text()
    assert json.loads((out / "command.json").read_text())["seeds_added"] == [{"from": 2, "to": 3}]
    assert after["seeds_added"] == [{"from": 2, "to": 3}]
    assert "Seeds: [0, 1, 2] (paired across arms; seed 2 added later to the 2 before)" in \
        (out / "report.md").read_text()
    # the added seed's runs are those of the comparison made with 3 seeds at once, bit for bit
    whole = _run(tmp_path / "whole", "seeds=3", "pretext.stage_seed=0")
    for arm in ("baseline", "tpp"):
        new, ref = after["arms"][arm]["runs"][2], whole["arms"][arm]["runs"][2]
        assert (new["val"], new["test"]) == (ref["val"], ref["test"])
    # seeds only grow, and only in a whole comparison
    assert main(["run", "--resume", str(out), "--set", "seeds=2"]) == 2
    assert "resuming may add seeds, never drop them" in capsys.readouterr().err
    part = tmp_path / "part"
    assert main(["run", "-o", str(part), "--only", "baseline:0", *args]) == 0
    assert main(["run", "--resume", str(part), "--set", "seeds=4"]) == 2
    assert "holds only some runs of its comparison" in capsys.readouterr().err
    pre = tmp_path / "pre"
    assert main(["pretrain", "-o", str(pre), *args]) == 0
    assert main(["pretrain", "--resume", str(pre), "--set", "seeds=5"]) == 2
    assert "only a comparison (tppeft run) has seeds to add" in capsys.readouterr().err
