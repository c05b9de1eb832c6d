"""A comparison spread over independent jobs (`tppeft run --only ARM:SEED`) and joined by `tppeft merge` gives
the numbers of the same comparison made by one command."""

from __future__ import annotations

import json

import pytest
from conftest import write_medmnist

from tppeft.cli import main

SETS = ["pretext.probe=false", "data.image_size=32", "threads=1",
        "seeds=2", "data.limit=16", "pretext.epochs=1", "finetune.epochs=1",
        "pretext.batch_size=8", "finetune.batch_size=8"]
ARGS = [a for s in SETS for a in ("--set", s)]


def _numbers(summary: dict) -> dict:
    runs = {(a, r["seed"]): (r["test"], r["best_epoch"], (r["pretext"] or {}).get("loss_end"))
            for a, e in summary["arms"].items() for r in e["runs"]}
    return {"runs": runs, "mean": {a: e["mean"] for a, e in summary["arms"].items()}, "paired": summary["paired"]}


def test_parts_merge_into_the_whole_comparison(tmp_path, one_thread, capsys):
    assert main(["run", "-o", str(tmp_path / "whole"), *ARGS]) == 0
    assert main(["run", "-o", str(tmp_path / "a"), *ARGS, "--only", "tpp:1", "--only", "baseline:0"]) == 0
    assert main(["run", "-o", str(tmp_path / "b"), *ARGS, "--only", "baseline:1", "--only", "tpp:0"]) == 0
    part = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert part["arms"]["tpp"]["n"] == 1 and [r["seed"] for r in part["arms"]["tpp"]["runs"]] == [1]
    capsys.readouterr()
    assert main(["merge", str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(tmp_path / "merged")]) == 0
    assert "merged 4 run(s) from 2 folder(s)" in capsys.readouterr().out
    whole = json.loads((tmp_path / "whole" / "summary.json").read_text())
    merged = json.loads((tmp_path / "merged" / "summary.json").read_text())
    assert _numbers(merged) == _numbers(whole)
    assert merged["merged_from"] == [str(tmp_path / "a"), str(tmp_path / "b")]
    assert (tmp_path / "merged" / "runs" / "tpp" / "seed0" / "target_params" / "target_params.safetensors").is_file()
    assert merged["figures"] == whole["figures"] == ["roc_curves.png"]  # drawn again from the runs' test scores
    assert (tmp_path / "merged" / "roc_curves.png").is_file() and "roc_curves.png" in (
        tmp_path / "merged" / "report.md").read_text()
    walls = merged["job_wall_seconds"]
    assert f"merged from 2 jobs: {max(walls):.0f} s for the longest, {sum(walls):.0f} s for all of them together" in (
        tmp_path / "merged" / "report.md").read_text()  # not one wall time: the parts may have run one after another
    assert main(["report", str(tmp_path / "merged")]) == 0
    # A finished one-seed comparison extended by a second seed (`--set seeds=2 --only ...`) merges into the
    # two-seed comparison; the merged config takes the larger number of seeds.
    assert main(["run", "-o", str(tmp_path / "c"), *ARGS, "--set", "seeds=1", "--only", "tpp:0"]) == 0
    assert main(["run", "-o", str(tmp_path / "d"), *ARGS, "--only", "baseline:1"]) == 0
    capsys.readouterr()
    assert main(["merge", str(tmp_path / "c"), str(tmp_path / "d"), "-o", str(tmp_path / "short")]) == 2
    assert "lack run(s) baseline:0, tpp:1" in capsys.readouterr().err and not (tmp_path / "short").exists()
    assert main(["merge", str(tmp_path / "c"), str(tmp_path / "a"), str(tmp_path / "d"),
                 "-o", str(tmp_path / "extended")]) == 0
    extended = json.loads((tmp_path / "extended" / "summary.json").read_text())
    assert _numbers(extended) == _numbers(whole) and extended["seeds"] == [0, 1]
    assert "seeds: 2" in (tmp_path / "extended" / "config.yaml").read_text()


def test_merge_refuses_other_configs_and_repeated_runs(tmp_path, capsys):
    assert main(["run", "-o", str(tmp_path / "a"), *ARGS, "--set", "seeds=1", "--set", "arms=[baseline]"]) == 0
    assert main(["run", "-o", str(tmp_path / "b"), *ARGS, "--set", "seeds=1", "--set", "arms=[baseline]",
                 "--set", "finetune.lr=0.002"]) == 0
    capsys.readouterr()
    assert main(["merge", str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(tmp_path / "m")]) == 2
    assert "another configuration" in capsys.readouterr().err and not (tmp_path / "m").exists()
    assert main(["run", "-o", str(tmp_path / "s"), *ARGS, "--set", "seeds=2", "--set", "arms=[baseline]",
                 "--set", "finetune.lr=0.002", "--only", "baseline:1"]) == 0
    capsys.readouterr()
    assert main(["merge", str(tmp_path / "a"), str(tmp_path / "s"), "-o", str(tmp_path / "m")]) == 2
    assert "differs in finetune" in capsys.readouterr().err  # seeds may differ, the rest may not
    assert main(["merge", str(tmp_path / "a"), str(tmp_path / "a"), "-o", str(tmp_path / "m")]) == 2
    assert "in both" in capsys.readouterr().err
    assert main(["run", "-o", str(tmp_path / "c"), *ARGS, "--only", "tpp:5"]) == 2
    assert "--only 'tpp:5'" in capsys.readouterr().err


def test_merge_refuses_parts_that_read_other_images_at_one_path(tmp_path, capsys):
    data = write_medmnist(tmp_path / "data.npz", n=(16, 8, 8), size=32)
    sets = [*ARGS, "--set", f"data.path={data}", "--set", "arms=[baseline]"]
    assert main(["run", "-o", str(tmp_path / "a"), *sets, "--only", "baseline:0"]) == 0
    write_medmnist(data, n=(16, 8, 8), size=32, seed=1)  # the file replaced between the jobs: other pixels
    assert main(["run", "-o", str(tmp_path / "b"), *sets, "--only", "baseline:1"]) == 0
    capsys.readouterr()
    assert main(["merge", str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(tmp_path / "m")]) == 2
    assert "read other images than" in capsys.readouterr().err and not (tmp_path / "m").exists()
    write_medmnist(data, n=(16, 8, 8), size=32)  # the first file again: a third job merges with the first
    assert main(["run", "-o", str(tmp_path / "c"), *sets, "--only", "baseline:1"]) == 0
    assert main(["merge", str(tmp_path / "a"), str(tmp_path / "c"), "-o", str(tmp_path / "m")]) == 0


def test_merge_refuses_another_backbone_file_and_names_each_machine(tmp_path, capsys):
    """One checkpoint path, two files (a retrain, another machine's copy): the parts' recorded SHA-256 differ and
    merge refuses. Parts made on two kinds of processor merge, and the summary and report say which runs ran where."""
    import shutil

    from tppeft.bundled import resolve
    from tppeft.io import read_jsonl
    from tppeft.revision import source_revision

    shutil.copytree(resolve("bundled:b0").parent, tmp_path / "b0")
    weights = tmp_path / "b0" / resolve("bundled:b0").name
    sets = [*ARGS, "--set", f"backbone.checkpoint={weights}", "--set", "arms=[baseline]"]
    for name, seed in (("a", 0), ("b", 1)):
        assert main(["run", "-o", str(tmp_path / name), *sets, "--only", f"baseline:{seed}"]) == 0
    made = json.loads((tmp_path / "a" / "summary.json").read_text())["arithmetic"]
    assert len(made) == 1 and made[0]["runs"] == ["baseline:0"] and made[0]["torch"] and made[0]["cpu_capability"]
    code = json.loads((tmp_path / "a" / "summary.json").read_text())["revision"]
    assert code == ([{"commit": source_revision(), "runs": ["baseline:0"]}] if source_revision() else [])
    records = read_jsonl(tmp_path / "b" / "results.jsonl")  # as if part b had run on another processor
    other = [{**r, "arithmetic": {**r["arithmetic"], "cpu": "Other CPU", "cpu_capability": "AVX512"}} for r in records]
    (tmp_path / "b" / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in other))
    assert main(["merge", str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(tmp_path / "m")]) == 0
    kinds = json.loads((tmp_path / "m" / "summary.json").read_text())["arithmetic"]
    assert [(k["cpu"], k["runs"]) for k in kinds] == [(made[0]["cpu"], ["baseline:0"]), ("Other CPU", ["baseline:1"])]
    report = (tmp_path / "m" / "report.md").read_text()
    assert "the runs were made on 2 kinds of machine" in report and "Other CPU, AVX512, torch" in report
    assert json.loads((tmp_path / "m" / "summary.json").read_text())["revision"] == \
        ([{"commit": source_revision(), "runs": ["baseline:0", "baseline:1"]}] if source_revision() else [])
    raw = bytearray(weights.read_bytes())
    raw[-3] ^= 1  # one bit of one weight: another backbone at the same path
    weights.write_bytes(bytes(raw))
    assert main(["run", "-o", str(tmp_path / "c"), *sets, "--only", "baseline:1"]) == 0
    capsys.readouterr()
    assert main(["merge", str(tmp_path / "a"), str(tmp_path / "c"), "-o", str(tmp_path / "n")]) == 2
    assert f"'{tmp_path / 'c'}' ran on another backbone than '{tmp_path / 'a'}'" in capsys.readouterr().err
    assert not (tmp_path / "n").exists()


@pytest.mark.parametrize("spec", ["tpp", "lora:0", "tpp:x"])
def test_only_names_arm_and_seed(tmp_path, capsys, spec):
    assert main(["run", "-o", str(tmp_path / "c"), *ARGS, "--only", spec]) == 2
    assert "ARM:SEED" in capsys.readouterr().err and not (tmp_path / "c").exists()


def test_a_finished_comparison_gains_a_variant_of_one_arm(tmp_path, one_thread, capsys):
    """Parts may differ in an arm's own options when the parts holding that arm's runs agree; a kept result
    folder (config.yaml and summary.json only) is a part too."""
    import shutil

    assert main(["run", "-o", str(tmp_path / "kept"), *ARGS, "--set", "seeds=1",
                 "--set", "arms=[baseline,tpp,baseline_matched]"]) == 0
    for extra in ("results.jsonl", "runs"):  # what a kept result folder leaves out
        path = tmp_path / "kept" / extra
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    shared = ["--set", "seeds=1", "--set", "arms=[baseline,tpp,baseline_matched]"]
    assert main(["run", "-o", str(tmp_path / "k2"), *ARGS, *shared, "--set", "baseline_matched.stage_shared_by=2",
                 "--only", "baseline_matched:0"]) == 0
    capsys.readouterr()
    kept_and_new = [str(tmp_path / "kept"), str(tmp_path / "k2"), "-o", str(tmp_path / "merged")]
    assert main(["merge", *kept_and_new]) == 2
    assert "baseline_matched seed 0 is in both" in capsys.readouterr().err
    for bad, message in (("3:baseline_matched", "expected N:ARM"), ("2:tpp", "holds no run of arm tpp")):
        assert main(["merge", *kept_and_new, "--exclude", bad]) == 2
        assert message in capsys.readouterr().err and not (tmp_path / "merged").exists()
    assert main(["merge", *kept_and_new, "--exclude", "1:baseline_matched"]) == 0
    kept = json.loads((tmp_path / "kept" / "summary.json").read_text())
    part = json.loads((tmp_path / "k2" / "summary.json").read_text())
    merged = json.loads((tmp_path / "merged" / "summary.json").read_text())
    kept_runs = {k: v for k, v in _numbers(kept)["runs"].items() if k[0] != "baseline_matched"}
    assert _numbers(merged)["runs"] == {**kept_runs, **_numbers(part)["runs"]}
    assert merged["merge_excluded"] == [f"{tmp_path / 'kept'}: baseline_matched"]
    assert merged["arms"]["baseline_matched"]["finetune_epochs"] == 1 + part["baseline_matched"]["extra_epochs"]
    assert merged["baseline_matched"] == part["baseline_matched"] and part["baseline_matched"]["stage_shared_by"] == 2
    assert merged["paired"]["tpp-baseline_matched"]["auc"]["n"] == 1
    assert "stage_shared_by: 2" in (tmp_path / "merged" / "config.yaml").read_text()
    assert "shared by 2 fine-tuning runs" in (tmp_path / "merged" / "report.md").read_text()
    assert merged["figure_runs"] == {"baseline_matched": [0]}  # the kept folder's runs brought no files
    assert "curves show only the runs whose files this folder holds (`baseline_matched` seed 0)" in (
        tmp_path / "merged" / "report.md").read_text()
    # runs of one arm made with two settings of its options are refused
    assert main(["run", "-o", str(tmp_path / "k3"), *ARGS, "--set", "seeds=2",
                 "--set", "arms=[baseline,tpp,baseline_matched]", "--set", "baseline_matched.stage_shared_by=3",
                 "--only", "baseline_matched:1"]) == 0
    capsys.readouterr()
    assert main(["merge", str(tmp_path / "k2"), str(tmp_path / "k3"), "-o", str(tmp_path / "m")]) == 2
    assert "different baseline_matched.* settings" in capsys.readouterr().err and not (tmp_path / "m").exists()


def test_tpp_runs_from_one_shared_stage_join_a_comparison_that_made_a_stage_per_seed(tmp_path, one_thread, capsys):
    """`pretext.stage_seed` is read by the arms with a TPP stage only: parts may differ in it when the parts
    holding those arms' runs agree; the merged folder takes their setting and their shared stage."""
    assert main(["run", "-o", str(tmp_path / "per_seed"), *ARGS]) == 0
    assert main(["run", "-o", str(tmp_path / "one"), *ARGS, "--set", "pretext.stage_seed=1",
                 "--only", "tpp:0", "--only", "tpp:1"]) == 0
    capsys.readouterr()
    parts = [str(tmp_path / "per_seed"), str(tmp_path / "one")]
    assert main(["merge", *parts, "--exclude", "1:tpp", "-o", str(tmp_path / "merged")]) == 0
    merged = json.loads((tmp_path / "merged" / "summary.json").read_text())
    one = json.loads((tmp_path / "one" / "summary.json").read_text())
    assert merged["pretext"]["stage_seed"] == 1 and "stage_seed: 1" in (tmp_path / "merged" / "config.yaml").read_text()
    assert merged["arms"]["tpp"]["runs"] == one["arms"]["tpp"]["runs"]
    assert "figure_runs" not in merged  # every run brought its files
    assert (tmp_path / "merged" / "runs" / "tpp" / "stage" / "target_params").is_dir()
    assert "One TPP stage, made with seed 1" in (tmp_path / "merged" / "report.md").read_text()
    # TPP runs made with two settings of pretext.stage_seed meet in one arm: refused
    assert main(["run", "-o", str(tmp_path / "own0"), *ARGS, "--only", "tpp:0"]) == 0
    assert main(["run", "-o", str(tmp_path / "one1"), *ARGS, "--set", "pretext.stage_seed=1", "--only", "tpp:1"]) == 0
    capsys.readouterr()
    assert main(["merge", str(tmp_path / "own0"), str(tmp_path / "one1"), "-o", str(tmp_path / "m")]) == 2
    assert "different pretext.stage_seed settings" in capsys.readouterr().err and not (tmp_path / "m").exists()


def test_one_comparisons_baseline_serves_another_pretext_tasks_tpp_runs(tmp_path, one_thread, capsys):
    """The `pretext` section is read only by the arms with a TPP stage or a matched budget: the baseline runs are
    the same whatever it says, and parts may differ in it when the parts holding those arms' runs agree."""
    arms = ["--set", "seeds=1", "--set", "arms=[baseline,tpp,baseline_matched]"]
    assert main(["run", "-o", str(tmp_path / "mae"), *ARGS, *arms]) == 0
    assert main(["run", "-o", str(tmp_path / "fd"), *ARGS, *arms, "--set", "pretext.method=featdistill",
                 *(a for arm in ("baseline", "tpp", "baseline_matched") for a in ("--only", f"{arm}:0"))]) == 0
    capsys.readouterr()
    mae, fd = (json.loads((tmp_path / p / "summary.json").read_text()) for p in ("mae", "fd"))
    assert _numbers(mae)["runs"][("baseline", 0)] == _numbers(fd)["runs"][("baseline", 0)]
    parts = [str(tmp_path / "mae"), str(tmp_path / "fd")]
    assert main(["merge", *parts, "--exclude", "1:tpp", "--exclude", "1:baseline_matched", "--exclude", "2:baseline",
                 "-o", str(tmp_path / "merged")]) == 0
    merged = json.loads((tmp_path / "merged" / "summary.json").read_text())
    assert merged["pretext"]["method"] == "featdistill" and merged["baseline_matched"] == fd["baseline_matched"]
    assert _numbers(merged)["runs"] == {**_numbers(fd)["runs"], ("baseline", 0): _numbers(mae)["runs"][("baseline", 0)]}
    assert "method: featdistill" in (tmp_path / "merged" / "config.yaml").read_text()
    # every baseline_matched run left out: the merged comparison has no such arm, nor its budget
    assert main(["merge", *parts, "--exclude", "1:tpp", "--exclude", "1:baseline_matched", "--exclude", "2:baseline",
                 "--exclude", "2:baseline_matched", "-o", str(tmp_path / "no-matched")]) == 0
    no_matched = json.loads((tmp_path / "no-matched" / "summary.json").read_text())
    assert list(no_matched["arms"]) == ["baseline", "tpp"] and "baseline_matched" not in no_matched
    assert list(no_matched["paired"]) == ["tpp-baseline"]
    assert "arms:\n- baseline\n- tpp\n" in (tmp_path / "no-matched" / "config.yaml").read_text()
    # no part holds a baseline_matched run and none was left out: the arm stays (its runs missing), with the budget
    # the kept TPP stage gives, not the first part's
    assert main(["run", "-o", str(tmp_path / "base"), *ARGS, *arms, "--only", "baseline:0"]) == 0
    assert main(["run", "-o", str(tmp_path / "fd-tpp"), *ARGS, *arms, "--set", "pretext.method=featdistill",
                 "--only", "tpp:0"]) == 0
    capsys.readouterr()
    assert main(["merge", str(tmp_path / "base"), str(tmp_path / "fd-tpp"), "-o", str(tmp_path / "missing")]) == 0
    missing = json.loads((tmp_path / "missing" / "summary.json").read_text())
    base = json.loads((tmp_path / "base" / "summary.json").read_text())
    assert base["baseline_matched"] == mae["baseline_matched"] != fd["baseline_matched"]
    assert missing["arms"]["baseline_matched"]["n"] == 0 and missing["baseline_matched"] == fd["baseline_matched"]
    # nothing left at all
    assert main(["merge", *parts, *(a for i in (1, 2) for arm in ("baseline", "tpp", "baseline_matched")
                                    for a in ("--exclude", f"{i}:{arm}")), "-o", str(tmp_path / "none")]) == 2
    assert "--exclude left no run to merge" in capsys.readouterr().err and not (tmp_path / "none").exists()
    # tpp runs of one pretext task and baseline_matched runs charged another's stage, of another cost: refused
    assert main(["merge", *parts, "--exclude", "1:baseline_matched", "--exclude", "2:tpp", "--exclude", "2:baseline",
                 "-o", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert f"baseline_matched runs of '{parts[1]}' were charged a TPP stage with other pretext.* settings" in err
    assert f"'{parts[0]}' {mae['baseline_matched']['tpp_stage_in_finetune_epochs']:.2f} fine-tuning epochs" in err
    assert not (tmp_path / "m").exists()


def test_matched_runs_join_tpp_runs_whose_stage_costs_the_same(tmp_path, one_thread, capsys):
    """`baseline_matched` reads the `pretext` section only through the TPP stage's cost: its runs made under one
    setting are those another setting of the same cost gives, and join that setting's `tpp` runs; where the `tpp`
    part records no cost the merge is refused."""
    arms = ["--set", "seeds=1", "--set", "arms=[baseline,tpp,baseline_matched]"]
    slow = ["--set", "pretext.lr=0.0001"]  # another stage, of the same length and step cost
    assert main(["run", "-o", str(tmp_path / "slow"), *ARGS, *arms, *slow]) == 0
    assert main(["run", "-o", str(tmp_path / "matched"), *ARGS, *arms, "--only", "baseline_matched:0"]) == 0
    capsys.readouterr()
    whole, matched = (json.loads((tmp_path / p / "summary.json").read_text()) for p in ("slow", "matched"))
    assert whole["pretext"] != matched["pretext"]
    assert whole["baseline_matched"] == matched["baseline_matched"]
    assert _numbers(whole)["runs"][("baseline_matched", 0)] == _numbers(matched)["runs"][("baseline_matched", 0)]
    parts = [str(tmp_path / "slow"), str(tmp_path / "matched")]
    assert main(["merge", *parts, "--exclude", "1:baseline_matched", "-o", str(tmp_path / "merged")]) == 0
    merged = json.loads((tmp_path / "merged" / "summary.json").read_text())
    assert _numbers(merged) == _numbers(whole) and merged["pretext"] == whole["pretext"]
    assert "lr: 0.0001" in (tmp_path / "merged" / "config.yaml").read_text()
    # pretext.stage_seed, which the matched budget does not read, asks for no stage cost
    assert main(["run", "-o", str(tmp_path / "shared"), *ARGS, "--set", "seeds=1",
                 "--set", "pretext.stage_seed=0"]) == 0
    assert main(["merge", str(tmp_path / "shared"), parts[1], "-o", str(tmp_path / "shared-matched")]) == 0
    # a tpp part without baseline_matched records no stage cost to compare with
    assert main(["run", "-o", str(tmp_path / "two"), *ARGS, "--set", "seeds=1", *slow]) == 0
    capsys.readouterr()
    assert main(["merge", str(tmp_path / "two"), parts[1], "-o", str(tmp_path / "m")]) == 2
    assert f"'{tmp_path / 'two'}' records none" in capsys.readouterr().err and not (tmp_path / "m").exists()


def test_a_finished_comparison_gains_an_arm(tmp_path, one_thread, capsys):
    """Parts may differ in `arms`: a kept two-arm comparison and the runs of a third arm made under the longer
    arm list merge into the three-arm comparison one command would give; a merge that adds an arm but lacks one
    of its runs is refused and names it."""
    import shutil

    three = ["--set", "seeds=1", "--set", "arms=[baseline,tpp,baseline_matched]"]
    assert main(["run", "-o", str(tmp_path / "whole"), *ARGS, *three]) == 0
    assert main(["run", "-o", str(tmp_path / "kept"), *ARGS, "--set", "seeds=1"]) == 0
    for extra in ("results.jsonl", "runs"):  # what a kept result folder leaves out
        path = tmp_path / "kept" / extra
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    assert main(["run", "-o", str(tmp_path / "added"), *ARGS, *three, "--only", "baseline_matched:0"]) == 0
    capsys.readouterr()
    assert main(["merge", str(tmp_path / "kept"), str(tmp_path / "added"), "-o", str(tmp_path / "merged")]) == 0
    whole = json.loads((tmp_path / "whole" / "summary.json").read_text())
    merged = json.loads((tmp_path / "merged" / "summary.json").read_text())
    assert list(merged["arms"]) == ["baseline", "tpp", "baseline_matched"]
    assert _numbers(merged) == _numbers(whole) and merged["baseline_matched"] == whole["baseline_matched"]
    assert "- baseline_matched" in (tmp_path / "merged" / "config.yaml").read_text()
    # the added arm lacks its seed-1 run where the new part extends the comparison to two seeds
    assert main(["run", "-o", str(tmp_path / "more"), *ARGS, *three, "--set", "seeds=2",
                 "--only", "baseline:1", "--only", "tpp:1"]) == 0
    capsys.readouterr()
    parts = [str(tmp_path / p) for p in ("kept", "added", "more")]
    assert main(["merge", *parts, "-o", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert "extend the comparison to 2 seeds and by arm(s) baseline_matched but lack run(s) baseline_matched:1" in err
    assert not (tmp_path / "m").exists()
