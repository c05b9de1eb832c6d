"""`tppeft sweep`: grid parsing, validation before anything runs, one table, resume."""

import json

import pytest
from conftest import tiny_config

from tppeft.cli import main
from tppeft.config import ConfigError
from tppeft.reporting.budget import late_best_arms
from tppeft.sweep import cell_configs, expand, parse_grid, table
from tppeft.targets import TargetParamError


def test_grid_expands_in_order_and_names_cells():
    axes = parse_grid(["peft.method=[lora, ssf]", "data.path=[bundled:breastmnist, data/pneumoniamnist.npz]"])
    cells = expand(axes)
    assert cells[1] == {"peft.method": "lora", "data.path": "data/pneumoniamnist.npz"} and len(cells) == 4
    names = [n for n, _, _ in cell_configs(None, [], axes)]
    assert names == ["lora_breastmnist", "lora_pneumoniamnist", "ssf_breastmnist", "ssf_pneumoniamnist"]
    assert parse_grid(["seeds=2"]) == [("seeds", [2])]


def test_bad_cells_fail_before_anything_runs():
    with pytest.raises(TargetParamError, match="'nope' is unknown"):
        cell_configs(None, [], parse_grid(["peft.method=[lora, nope]"]))
    with pytest.raises(ConfigError, match="peft.r"):
        cell_configs(None, [], parse_grid(["peft.r=[4, 0]"]))
    with pytest.raises(ConfigError, match="twice"):
        parse_grid(["seeds=[1]", "seeds=[2]"])


def test_sweep_runs_every_cell_tabulates_and_resumes(tmp_path, capsys):
    sets = [*tiny_config()[1], "data.limit=32", "seeds=2", "pretext.epochs=0"]
    args = ["sweep", "-o", str(tmp_path / "s"), *[a for s in sets for a in ("--set", s)],
            "--grid", "peft.method=[bitfit, vpt_shallow]"]
    assert main(args) == 0
    out = capsys.readouterr()
    sweep = json.loads((tmp_path / "s" / "sweep.json").read_text())
    assert [c["cell"] for c in sweep["cells"]] == ["bitfit", "vpt_shallow"]
    for cell in sweep["cells"]:
        summary = json.loads((tmp_path / "s" / "cells" / cell["cell"] / "summary.json").read_text())
        assert cell["baseline"]["mean"] == summary["arms"]["baseline"]["mean"]["auc"]
        assert cell["target_params"]["count"] == summary["target_params"]["count"] > 0
        vals = [r["val"]["auc"] for r in summary["arms"]["tpp"]["runs"]]
        assert cell["tpp"]["val_mean"] == pytest.approx(sum(vals) / len(vals))  # what a setting is chosen on
        assert cell["too_short"] == [a.arm for a in late_best_arms(summary)]
        # with no TPP epochs the arms are identical, and the table says so rather than claiming a win
        assert cell["tpp_minus_baseline"]["mean"] == 0 and cell["reading"] == "no clear difference"
        command = json.loads((tmp_path / "s" / "cells" / cell["cell"] / "command.json").read_text())
        assert command["split_sha256"] == summary["data"]["split_sha256"]  # what a resumed cell must read again
    assert "| bitfit | breastmnist |" in out.out and "| vpt_shallow |" in (tmp_path / "s" / "sweep.md").read_text()
    assert main(args) == 2  # an existing sweep is not overwritten silently
    assert main([*args, "--resume"]) == 0
    assert capsys.readouterr().err.count("finished before, reused") == 2
    assert main(["report", str(tmp_path / "s")]) == 0
    assert "| vpt_shallow |" in capsys.readouterr().out


def test_the_table_shows_validation_means_and_arms_that_stopped_late():
    row = {"cell": "lora", "assign": {"peft.method": "lora"}, "dataset": "toy", "metric": "auc",
           "target_params": {"count": 10, "percent": 1.0}, "too_short": ["baseline"],
           "baseline": {"mean": 0.7, "std": 0.01, "n": 3, "val_mean": 0.71},
           "tpp": {"mean": 0.72, "std": 0.02, "n": 3, "val_mean": 0.755, "pretext_loss": [1.0, 0.5]}}
    text = table({"grid": [["peft.method", ["lora"]]], "cells": [row]})
    assert "val AUC: baseline / TPP" in text and "| 0.710 / 0.755 |" in text
    assert text.rstrip().endswith("| 1.0000 → 0.5000 | `baseline` |")
    row["too_short"] = []
    assert table({"grid": [["peft.method", ["lora"]]], "cells": [row]}).rstrip().endswith("| 1.0000 → 0.5000 | — |")
