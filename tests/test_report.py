"""Reports (Markdown, self-contained HTML, PNG figures) and `tppeft compare`, from run folders only."""

import base64
import json
import re
import shutil

import pytest
from conftest import tiny_config

from tppeft.cli import main
from tppeft.config import load_config
from tppeft.io import write_json
from tppeft.protocol import summarize
from tppeft.reporting.report import ReportError, verdict

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "run"
    sets = tiny_config()[1] + ["data.limit=32", "data.image_size=32", "peft.targets=[qkv]", "finetune.epochs=2",
                               "threads=1"]
    assert main(["run", "-o", str(out), *[a for s in sets for a in ("--set", s)]]) == 0
    return out


def synthetic_run(path, dataset, auc):
    """A run folder with only a summary.json (no run folders), as an older or a copied run may be."""
    arms = list(auc)
    cfg = load_config(None, [f"arms=[{', '.join(arms)}]", f"seeds={len(auc[arms[0]])}"])
    records = [{"arm": a, "seed": s, "test": {"acc": 0.8, "auc": v}, "seconds": 2.0, "best_epoch": 1,
                "finetune_epochs": 7, "pretext": None} for a in arms for s, v in enumerate(auc[a])]
    path.mkdir(parents=True)
    write_json(path / "summary.json", summarize(records, cfg, {"dataset": dataset}, ["acc", "auc"], "auc"))
    return path


def test_report_files_and_html_is_self_contained(run_dir):
    for name in ("report.md", "report.html", "metric_by_arm.png", "loss_curves.png"):
        assert (run_dir / name).is_file(), name
    html = (run_dir / "report.html").read_text()
    sources = re.findall(r'src="([^"]*)"', html)
    assert len(sources) == 2 and all(s.startswith("data:image/png;base64,") for s in sources)
    embedded = [base64.b64decode(s.split(",", 1)[1]) for s in sources]
    assert embedded[0] == (run_dir / "metric_by_arm.png").read_bytes()
    assert embedded[1] == (run_dir / "loss_curves.png").read_bytes()
    assert all(png.startswith(PNG_MAGIC) for png in embedded)
    assert not re.search(r'(href|src)="(https?:)?//', html) and "<link" not in html and "<script" not in html
    md = (run_dir / "report.md").read_text()
    assert "![" in md and "(metric_by_arm.png)" in md and "(loss_curves.png)" in md
    assert "tpp − baseline" in md and "tpp − baseline" in html
    summary = json.loads((run_dir / "summary.json").read_text())
    for arm, e in summary["arms"].items():  # the table shows the summary's numbers
        assert f"| {arm} | {e['n']} |" in md and f"{e['mean']['auc']:.3f} ± {e['std']['auc']:.3f}" in md


def test_loss_curves_come_from_the_run_folders(run_dir):
    from tppeft.reporting.plots import read_curves

    summary = json.loads((run_dir / "summary.json").read_text())
    curves = read_curves(run_dir, summary)
    assert [e for e, _ in curves["tpp"][0]["pretext"]] == [1]
    assert [e for e, _ in curves["baseline"][1]["finetune"]] == [1, 2]
    assert curves["baseline"][0]["pretext"] == [] and "auc" in curves["tpp"][0]["val"][0][1]


def test_report_rebuilds_from_files_only_in_a_copied_folder(run_dir, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    for name in ("report.md", "report.html", "metric_by_arm.png", "loss_curves.png"):
        (copy / name).unlink()
    assert main(["report", str(copy)]) == 0
    assert (copy / "report.md").read_text() == (run_dir / "report.md").read_text()
    assert (copy / "report.html").is_file() and "report.html" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "summary.json" in capsys.readouterr().err


def test_report_without_run_folders(tmp_path):
    from tppeft.reporting.report import write_report

    run = synthetic_run(tmp_path / "s", "pneumoniamnist", {"baseline": [0.9, 0.92], "tpp": [0.93, 0.94]})
    md = write_report(run).read_text()
    assert "TPP better (only 2 seeds: weak)" in md and (run / "loss_curves.png").read_bytes().startswith(PNG_MAGIC)


def test_verdict_needs_an_interval_that_excludes_zero():
    d = {"n": 5, "ci95": [0.001, 0.02]}
    assert verdict(d) == "TPP better"
    assert verdict({**d, "ci95": [-0.01, 0.02]}) == "no clear difference"
    assert verdict({**d, "ci95": [-0.03, -0.01]}) == "TPP worse"
    assert verdict({"n": 1, "ci95": [None, None]}) == "too few seeds to tell"


def test_compare_merges_runs(run_dir, tmp_path, capsys):
    other = synthetic_run(tmp_path / "pneu", "pneumoniamnist",
                          {"baseline": [0.90, 0.92, 0.91], "tpp": [0.93, 0.94, 0.92], "eva": [0.95, 0.95, 0.96]})
    out = tmp_path / "cmp" / "table.md"
    assert main(["compare", str(run_dir), str(other), "--output", str(out)]) == 0
    text = capsys.readouterr().out
    assert out.read_text() in text
    table = text.split("## Test AUC (mean ± std over seeds)")[1].split("##")[0]
    header = table.strip().splitlines()[0]
    assert "breastmnist (run)" in header and "pneumoniamnist (pneu)" in header
    rows = {line.split("|")[1].strip(): line for line in table.strip().splitlines()[2:]}
    assert set(rows) == {"baseline", "tpp", "eva"}
    assert "0.910 ± 0.010 (n=3)" in rows["baseline"] and rows["eva"].split("|")[2].strip() == "—"
    paired = text.split("## Paired differences within each run")[1]
    assert "tpp − eva" in paired and "wins 0/3" in paired and "wins 3/3" in paired
    html = tmp_path / "t.html"
    assert main(["compare", str(run_dir), str(other), "-o", str(html)]) == 0
    assert html.read_text().startswith("<!DOCTYPE html>") and "<table>" in html.read_text()
    assert main(["compare", str(tmp_path / "missing")]) == 2


def test_missing_summary_is_a_report_error(tmp_path):
    from tppeft.reporting.compare import compare_blocks

    with pytest.raises(ReportError, match="summary.json"):
        compare_blocks([tmp_path])
