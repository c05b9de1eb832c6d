"""End to end through the command line on a tiny budget of the bundled data."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from conftest import tiny_config
from peft import PeftModel

from tppeft.backbones import build_backbone
from tppeft.cli import main
from tppeft.config import BackboneConfig
from tppeft.experiment.context import prepare_context
from tppeft.experiment.finetune_stage import finetune_stage
from tppeft.experiment.model import build_run_model
from tppeft.experiment.pretext_stage import pretrain_stage

TINY = [a for s in tiny_config()[1] for a in ("--set", s)]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["run", "-o", str(out), *TINY]) == 0
    return out


def test_run_writes_summary_in_the_documented_shape(run_dir, capsys):
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["primary_metric"] == "auc"
    assert set(summary["arms"]) == {"baseline", "tpp"}
    for arm in ("baseline", "tpp"):
        entry = summary["arms"][arm]
        assert [r["seed"] for r in entry["runs"]] == [0, 1]
        for r in entry["runs"]:
            assert set(r["test"]) >= {"acc", "auc"} and r["seconds"] > 0 and r["backbone_unchanged"]
        assert set(entry["mean"]) == {"acc", "auc"} and set(entry["std"]) == {"acc", "auc"}
    tpp_run = summary["arms"]["tpp"]["runs"][0]
    assert tpp_run["pretext"]["loss_start"] > 0 and tpp_run["pretext"]["loss_end"] > 0
    assert summary["arms"]["baseline"]["runs"][0]["pretext"] is None
    assert summary["paired"]["tpp-baseline"]["auc"]["n"] == 2
    # b0's bundled pool keys hold every BreastMNIST training image: the run counts them and says it is in-pool
    seen, images = summary["backbone_saw_images"]["train"]
    assert seen == images > 0
    assert "read the comparison as one on images the backbone has seen" in (run_dir / "report.md").read_text()


def test_run_folder_contents(run_dir):
    assert (run_dir / "config.yaml").is_file() and (run_dir / "report.md").is_file()
    assert len((run_dir / "results.jsonl").read_text().splitlines()) == 4
    for seed in (0, 1):
        tp = run_dir / "runs" / "tpp" / f"seed{seed}" / "target_params"
        assert (tp / "adapter_model.safetensors").is_file() and (tp / "adapter_config.json").is_file()
        assert not (run_dir / "runs" / "baseline" / f"seed{seed}" / "target_params").exists()
        assert (run_dir / "runs" / "baseline" / f"seed{seed}" / "finetuned" / "head.safetensors").is_file()
    lines = (run_dir / "runs" / "tpp" / "seed0" / "metrics.jsonl").read_text().splitlines()
    stages = [json.loads(line)["stage"] for line in lines]
    assert stages.count("pretext") == 2 and stages.count("finetune") == 2
    report = (run_dir / "report.md").read_text()
    assert "tpp − baseline" in report and "| baseline | 2 |" in report
    # every output file has the permissions the umask gives (safetensors alone would write 0600)
    mask = os.umask(0)
    os.umask(mask)
    modes = {p.relative_to(run_dir).as_posix(): p.stat().st_mode & 0o777 for p in run_dir.rglob("*") if p.is_file()}
    assert any(name.endswith(".safetensors") for name in modes)
    assert {name: mode for name, mode in modes.items() if mode != 0o666 & ~mask} == {}


def test_existing_run_is_not_overwritten_silently(run_dir, capsys):
    assert main(["run", "-o", str(run_dir), *TINY]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (run_dir / "summary.json").is_file()


def test_report_rebuilds_from_summary(run_dir, capsys):
    before = (run_dir / "report.md").read_text()
    (run_dir / "report.md").unlink()
    assert main(["report", str(run_dir)]) == 0
    assert (run_dir / "report.md").read_text() == before
    assert "tpp − baseline" in capsys.readouterr().out


def test_report_of_an_unfinished_comparison_prints_its_finished_runs_and_writes_nothing(run_dir, tmp_path, capsys):
    """While a comparison runs (tpp seed 1 not finished, its line being written) `tppeft report` prints the table of
    the finished runs, says it is interim, and leaves the folder as it was."""
    copy = tmp_path / "running"
    shutil.copytree(run_dir, copy)
    for name in ("summary.json", "report.md", "report.html"):
        (copy / name).unlink()
    lines = (copy / "results.jsonl").read_text().splitlines()
    kept = [json.loads(x) for x in lines if not ('"arm": "tpp"' in x and '"seed": 1' in x)]
    assert len(kept) == 3
    results = "".join(json.dumps(r) + "\n" for r in kept) + '{"arm": "tpp", "se'  # a line half written
    (copy / "results.jsonl").write_text(results)
    before = sorted(p.relative_to(copy) for p in copy.rglob("*"))
    assert main(["report", str(copy)]) == 0
    out = capsys.readouterr().out
    assert out.count("INTERIM: 3 of 4 runs finished (baseline 2 of 2, tpp 1 of 2)") == 2  # first and last
    baseline_auc = sum(r["test"]["auc"] for r in kept if r["arm"] == "baseline") / 2
    row = next(x for x in out.splitlines() if x.startswith("| baseline"))
    assert f"{baseline_auc:.3f}" in row
    assert sorted(p.relative_to(copy) for p in copy.rglob("*")) == before
    assert (copy / "results.jsonl").read_text() == results
    (copy / "results.jsonl").unlink()  # just started: no run has finished, so the count alone
    assert main(["report", str(copy)]) == 0
    assert capsys.readouterr().out.strip().startswith("INTERIM: 0 of 4 runs finished (baseline 0 of 2, tpp 0 of 2)")


def test_pretrain_then_finetune_and_peft_loads_the_files(tmp_path, capsys):
    pre = tmp_path / "pre"
    assert main(["pretrain", "-o", str(pre), *TINY]) == 0
    target = pre / "target_params"
    info = json.loads((pre / "pretext.json").read_text())
    assert info["target_params"] > 0 and "loss_end" in info
    card = (target / "README.md").read_text()  # our model card, not peft's empty template
    assert card.startswith("# lora target parameters (tppeft)") and "the TPP stage: `mae` pretext task" in card
    assert f"{info['loss_start']:.4f} -> {info['loss_end']:.4f}" in card and "PeftModel.from_pretrained" in card
    # the saved files load with peft alone into the plain timm backbone and match the tool's own model
    cfg, _ = tiny_config()
    ctx = prepare_context(cfg, log=lambda s: None)
    ours = build_run_model(ctx, seed=0, init=target).vit
    plain = PeftModel.from_pretrained(build_backbone(BackboneConfig()).model, str(target))
    x = torch.randn(4, 3, 64, 64)
    assert torch.equal(plain(x), ours(x))
    for init in (str(pre), "none"):
        out = tmp_path / f"ft-{init == 'none'}"
        assert main(["finetune", "-o", str(out), "--init", init, *TINY]) == 0
        rec = json.loads((out / "results.jsonl").read_text())
        assert set(rec["test"]) >= {"acc", "auc"}
        assert "fine-tuning on 48 labelled images" in (out / "finetuned" / "README.md").read_text()
    assert main(["finetune", "-o", str(tmp_path / "bad"), "--init", str(tmp_path / "nowhere"), *TINY]) == 2
    capsys.readouterr()
    for folder, command, record in ((pre, "pretrain", "pretext.json"), (out, "finetune", "results.jsonl")):
        assert main(["report", str(folder)]) == 2  # a stage, not a comparison: said so, not "resume it"
        err = capsys.readouterr().err
        assert f"holds a `tppeft {command}` stage, not a comparison: its record is {record}" in err
        assert "resume" not in err


def test_backbone_weights_are_bit_identical_after_both_stages(tmp_path):
    cfg, _ = tiny_config()
    ctx = prepare_context(cfg, log=lambda s: None)
    template = {k: v.clone() for k, v in ctx.backbone.model.state_dict().items()}
    run = build_run_model(ctx, seed=0)
    frozen_before = {k: v.clone() for k, v in run.vit.state_dict().items() if "lora_" not in k}
    target_before = [p.detach().clone() for p in run.target_params()]
    pretrain_stage(ctx, run, 0, tmp_path, "t")
    target_mid = [p.detach().clone() for p in run.target_params()]
    finetune_stage(ctx, run, 0, tmp_path, "t")
    frozen_after = {k: v for k, v in run.vit.state_dict().items() if "lora_" not in k}
    assert frozen_before.keys() == frozen_after.keys()
    assert all(torch.equal(frozen_before[k], frozen_after[k]) for k in frozen_before)
    assert all(torch.equal(template[k], v) for k, v in ctx.backbone.model.state_dict().items())
    assert run.frozen_unchanged()
    # and the target parameters did train in both stages
    assert any(not torch.equal(a, b) for a, b in zip(target_before, target_mid, strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(target_mid, run.target_params(), strict=True))


def test_arms_are_paired_by_seed(tmp_path):
    """With no TPP epochs the tpp arm must reproduce the baseline exactly: same init, order, augmentation."""
    out = tmp_path / "paired"
    sets = [*TINY, "--set", "pretext.epochs=0", "--set", "seeds=1"]
    assert main(["run", "-o", str(out), *sets]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["arms"]["tpp"]["runs"][0]["test"] == s["arms"]["baseline"]["runs"][0]["test"]


def test_bad_config_exits_2_with_the_key(tmp_path, capsys):
    assert main(["run", "-o", str(tmp_path / "x"), "--set", "peft.r=0"]) == 2
    assert "peft.r" in capsys.readouterr().err
    assert main(["run", "-o", str(tmp_path / "y"), "--set", "data.path=/no/such.npz"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_console_script_list():
    exe = shutil.which("tppeft")
    assert exe, "the tppeft console script is not installed"
    out = subprocess.run([exe, "list"], capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    for heading, name in [("peft methods:", "lora"), ("pretext tasks:", "mae"), ("arms:", "baseline"),
                          ("tasks:", "classification"), ("tasks:", "segmentation"), ("tasks:", "volume"),
                          ("configs:", "default"), ("configs:", "busi"), ("configs:", "adrenalmnist3d")]:
        i = lines.index(heading)
        assert f"  {name}" in lines[i + 1:]


def test_version_and_a_torch_free_command_line(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip().startswith("tppeft ")
    code = ("import sys, tppeft.cli; assert 'torch' not in sys.modules, 'tppeft.cli imported torch'")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("argv", [["--help"], ["list", "-v"], ["config"], ["config", "--docs"],
                                  ["config", "hippocampus_vit3d", "--set", "peft.method=ssf"]])
def test_help_list_and_config_import_no_torch(argv):
    code = ("import contextlib, io, sys, tppeft.cli\n"
            "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
            f"    tppeft.cli.main({argv!r})\n"
            "assert 'torch' not in sys.modules, 'imported torch'")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(("argv", "expected"), [
    (["run", "--set", "finetune.epoch=3"], "unknown key 'finetune.epoch' (did you mean 'finetune.epochs'"),
    (["run", "--set", "train.epochs=3"], "did you mean 'pretext.epochs' or 'finetune.epochs'"),
    (["run", "--set", "fintune.lr=0.1"], "unknown key 'fintune' (did you mean 'finetune'"),
    (["run", "hipocampus"], "neither a file nor a bundled config (did you mean 'hippocampus'"),
    (["config", "--set", "pretext.method=simclrr"], "'simclrr' is unknown (did you mean 'simclr'?)"),
    (["config", "--set", "peft.method=lorra"], "'lorra' is unknown (did you mean 'lora'"),
    (["config", "--set", "arms=[baselin]"], "unknown arm(s) ['baselin'] (did you mean 'baseline'"),
])
def test_mistyped_names_get_a_suggestion(argv, expected, tmp_path, capsys):
    assert main([*argv, *(["-o", str(tmp_path / "out")] if argv[0] == "run" else [])]) == 2
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("argv", "expected"), [
    (["run", "--epochs", "3"], "--set finetune.epochs=3 (or pretext.epochs, backbone_pretrain.epochs)"),
    (["run", "--finetune-lr=0.1"], "--set finetune.lr=0.1"),
    (["run", "--fast"], "config keys are set with --set KEY=VALUE (`tppeft config --docs` lists them)"),
])
def test_a_config_key_given_as_a_flag_gets_the_set_form(argv, expected, capsys):
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 2 and expected in capsys.readouterr().err


def test_a_closed_pipe_ends_quietly():
    exe = shutil.which("tppeft")
    proc = subprocess.run(f"'{exe}' config --docs | head -1", shell=True, capture_output=True, text=True)
    assert proc.stdout.startswith("| key |") and "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr
