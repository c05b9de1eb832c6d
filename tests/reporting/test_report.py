"""Reports (Markdown, self-contained HTML, PNG figures) and `tppeft compare`, from run folders only."""

import base64
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_config, write_medmnist
from sklearn.metrics import roc_auc_score

from tppeft.cli import main
from tppeft.config import load_config
from tppeft.experiment.comparison import summarize
from tppeft.io import write_json
from tppeft.reporting.report import (
    ReportError,
    arms_rows,
    per_class_text,
    probe_counts_text,
    verdict,
    verdict_lines,
)

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
    assert len(sources) == 4 and all(s.startswith("data:image/png;base64,") for s in sources)
    embedded = [base64.b64decode(s.split(",", 1)[1]) for s in sources]
    assert embedded[0] == (run_dir / "metric_by_arm.png").read_bytes()
    assert embedded[1] == (run_dir / "paired_differences.png").read_bytes()
    assert embedded[2] == (run_dir / "loss_curves.png").read_bytes()
    assert embedded[3] == (run_dir / "roc_curves.png").read_bytes()
    assert all(png.startswith(PNG_MAGIC) for png in embedded)
    assert not re.search(r'(href|src)="(https?:)?//', html) and "<link" not in html and "<script" not in html
    md = (run_dir / "report.md").read_text()
    assert "![" in md and "(metric_by_arm.png)" in md and "(loss_curves.png)" in md
    assert "tpp − baseline" in md and "tpp − baseline" in html
    summary = json.loads((run_dir / "summary.json").read_text())
    for arm, e in summary["arms"].items():  # the table shows the summary's numbers
        assert f"| {arm} | {e['n']} |" in md and f"{e['mean']['auc']:.3f} ± {e['std']['auc']:.3f}" in md


def test_roc_curves_are_drawn_from_each_runs_test_scores(run_dir):
    from tppeft.tasks.classification import classification_metrics, roc_points

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["figures"] == ["roc_curves.png"] and "## ROC curves" in (run_dir / "report.md").read_text()
    for arm, entry in summary["arms"].items():
        for r in entry["runs"]:
            with np.load(run_dir / "runs" / arm / f"seed{r['seed']}" / "test_scores.npz") as f:
                scores, labels = f["scores"], f["labels"]
            assert scores.shape == (summary["split_sizes"]["test"], 2)
            assert classification_metrics(labels, scores, "binary-class")["auc"] == pytest.approx(r["test"]["auc"])
            fpr, tpr, auc = roc_points(labels, scores, "binary-class")
            assert auc == pytest.approx(r["test"]["auc"]) and fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1


def test_roc_points_of_several_classes_pool_one_vs_rest():
    from tppeft.tasks.classification import roc_points

    labels = np.array([0, 1, 2, 2])
    perfect = np.eye(3)[labels]
    assert roc_points(labels, perfect, "multi-class")[2] == 1.0
    assert roc_points(labels, perfect[:, ::-1], "multi-class")[2] < 0.5
    assert roc_points(np.zeros(4, int), np.full((4, 2), 0.5), "binary-class") is None  # one class: no curve
    multilabel = np.array([[1, 0], [0, 1], [1, 1]])
    assert roc_points(multilabel, multilabel * 0.9, "multilabel")[2] == 1.0


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
    for name in ("report.md", "report.html", "metric_by_arm.png", "paired_differences.png", "loss_curves.png"):
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
    assert "TPP better (only 2 seeds: weak)" in md and (run / "metric_by_arm.png").read_bytes().startswith(PNG_MAGIC)
    assert not (run / "loss_curves.png").exists() and "loss_curves.png" not in md  # no runs, no curves to draw
    # a result folder kept without its runs keeps its curves figure when its report is rendered again
    (run / "loss_curves.png").write_bytes(PNG_MAGIC + b"the curves drawn when the runs were there")
    assert "(loss_curves.png)" in write_report(run).read_text()
    assert (run / "loss_curves.png").read_bytes().endswith(b"the curves drawn when the runs were there")



def test_the_report_says_when_validation_scores_come_from_few_images(tmp_path):
    """Validation scores chose the epoch they report: with few validation images the report says they flatter."""
    from tppeft.reporting.report import write_report

    run = synthetic_run(tmp_path / "s", "breastmnist", {"baseline": [0.9, 0.92], "tpp": [0.93, 0.94]})
    summary = json.loads((run / "summary.json").read_text())
    for n, said in ((78, True), (200, False)):
        write_json(run / "summary.json", {**summary, "split_sizes": {"train": 546, "val": n, "test": 156}})
        md = write_report(run).read_text()
        assert (f"With {n} validation images the validation scores are optimistic" in md) is said


def test_the_report_gives_the_paired_differences_on_validation_and_says_where_test_reads_otherwise(tmp_path):
    """summary.json's paired_val: the primary metric's paired differences on validation (what settings are chosen
    on); the report lists them and names a comparison whose reading differs from test's."""
    from tppeft.reporting.report import validation_text, write_report

    cfg = load_config(None, ["arms=[baseline, tpp]", "seeds=4"])
    test = {"baseline": [0.80, 0.82, 0.81, 0.80], "tpp": [0.85, 0.86, 0.87, 0.85]}
    val = {"baseline": [0.90, 0.92, 0.91, 0.93], "tpp": [0.91, 0.91, 0.92, 0.92]}
    records = [{"arm": a, "seed": s, "test": {"acc": 0.8, "auc": test[a][s]}, "val": {"auc": val[a][s]},
                "seconds": 2.0, "best_epoch": 1, "finetune_epochs": 7, "pretext": None}
               for a in ("baseline", "tpp") for s in range(4)]
    summary = summarize(records, cfg, {"dataset": "x"}, ["acc", "auc"], "auc")
    d = summary["paired_val"]["tpp-baseline"]["auc"]
    assert d["n"] == 4 and d["wins"] == 2 and abs(d["mean"]) < 1e-12 and list(summary["paired_val"]) == ["tpp-baseline"]
    text = validation_text(summary)
    assert text.startswith("On validation, the split settings are chosen on") and "tpp better in 2 of 4" in text
    assert "tpp − baseline (no clear difference on validation, TPP better (only 4 seeds: weak) on test)" in text
    run = tmp_path / "r"
    run.mkdir()
    write_json(run / "summary.json", summary)
    assert "Validation and test read differently" in write_report(run).read_text()
    for r in records:  # validation that agrees with test: no disagreement said
        r["val"] = {"auc": r["test"]["auc"] + 0.1}
    assert "read differently" not in validation_text(summarize(records, cfg, {"dataset": "x"}, ["acc", "auc"], "auc"))
    assert validation_text({"primary_metric": "auc", "paired": {}}) is None  # an older summary

def test_a_tpp_stage_that_learned_nothing_is_named_under_problems(tmp_path):
    out = tmp_path / "still"
    sets = tiny_config()[1] + ["data.limit=32", "data.image_size=32", "peft.targets=[qkv]", "threads=1", "seeds=2",
                               "arms=[tpp]", "pretext.lr=1e-12", "pretext.stage_seed=0"]
    assert main(["run", "-o", str(out), *[a for s in sets for a in ("--set", s)]]) == 0
    runs = json.loads((out / "summary.json").read_text())["arms"]["tpp"]["runs"]
    warning = runs[0]["pretext"]["warning"]
    assert "lower the held-out pretext loss" in warning and runs[1]["pretext"]["warning"] == warning
    problems = (out / "report.md").read_text().split("## Problems", 1)[1].split("##", 1)[0]
    assert problems.count("the TPP stage of seed(s) 0, 1: ") == 1  # one stage for both seeds: one line


def test_the_probe_changes_are_counted_per_arm_validation_first():
    runs = [{"seed": s, "pretext": {"probe_before": {"metric": "auc", "val": 0.8, "test": 0.7},
                                    "probe_after": {"metric": "auc", "val": 0.8 + dv, "test": 0.7 + dt}}}
            for s, (dv, dt) in enumerate([(-0.02, +0.01), (-0.01, +0.02), (+0.06, -0.03)])]
    summary = {"arms": {"baseline": {"runs": [{"seed": 0, "pretext": None}]}, "tpp": {"runs": runs}}}
    assert probe_counts_text(summary) == ("`tpp`: the TPP stage raised the probe on validation in 1 of 3 seeds "
                                          "(mean change +0.010) and on test in 2 of 3 seeds (mean change +0.000).")
    runs[2]["pretext"]["probe_after"]["test"] = None  # a seed without a test probe is left out of that count only
    assert "on test in 2 of 2 seeds (mean change +0.015)" in probe_counts_text(summary)
    assert probe_counts_text({"arms": {"tpp": {"runs": [{"seed": 0, "pretext": {"probe_before": None}}]}}}) is None


def test_verdict_needs_an_interval_that_excludes_zero():
    d = {"n": 6, "ci95": [0.001, 0.02]}
    assert verdict(d) == "TPP better"
    assert verdict({**d, "ci95": [-0.01, 0.02]}) == "no clear difference"
    assert verdict({**d, "ci95": [-0.03, -0.01]}) == "TPP worse"
    assert verdict({"n": 1, "ci95": [None, None]}) == "too few seeds to tell"
    # 5 seeds cannot reach p < 0.05 by an exact sign test (5 of 5 give 0.0625): still weak
    assert verdict({**d, "n": 5}) == "TPP better (only 5 seeds: weak)"
    # an interval above zero that the exact sign test does not back says so (7 of 8: p = 0.07; 8 of 8: 0.008)
    assert verdict({**d, "n": 8, "sign_test_p": 0.0703}) == "TPP better (sign test p = 0.07: not confirmed)"
    assert verdict({**d, "n": 8, "sign_test_p": 0.0078}) == "TPP better"
    assert verdict({**d, "n": 8, "sign_test_p": 0.0703}, caveat=False) == "TPP better"
    assert verdict({**d, "ci95": [-0.01, 0.02], "sign_test_p": 0.5}) == "no clear difference"


def test_a_verdict_the_exact_sign_test_does_not_confirm_says_so():
    from tppeft.reporting.report import verdict_lines
    from tppeft.reporting.stats import sign_test_p

    def line(wins: int, losses: int, ci95: tuple = (0.001, 0.02)) -> str:
        d = {"n": wins + losses, "ci95": list(ci95), "mean": 0.01, "wins": wins,
             "sign_test_p": sign_test_p(wins, losses)}
        return verdict_lines({"primary_metric": "auc", "paired": {"tpp-baseline": {"auc": d}}})[0]

    lean = line(6, 2)  # p = 0.29
    assert lean.startswith("`tpp` vs `baseline`: TPP better: ") and lean.endswith("(not confirmed by the exact sign "
                                                                                 "test, p = 0.29)")
    assert "p = 0.07" in line(7, 1) and "sign test" not in line(8, 0)  # p = 0.008
    assert "sign test" not in line(6, 2, (-0.01, 0.02))  # no difference claimed, nothing to confirm


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


def test_report_leads_with_the_verdict_on_the_primary_metric(tmp_path):
    from tppeft.reporting.report import comparison_text, load_summary, write_report

    run = synthetic_run(tmp_path / "s", "breastmnist", {"baseline": [0.90, 0.92, 0.91, 0.93, 0.90],
                                                      "tpp": [0.90, 0.93, 0.91, 0.92, 0.91]})
    md = write_report(run).read_text()
    first = md.split("\n\n")[1]  # right below the title
    assert first.startswith("> **Verdict on the primary metric (AUC")
    assert "`tpp` vs `baseline`: no clear difference: tpp − baseline +0.002 AUC, 95% CI [" in first
    assert "tpp better in 2 of 5 seeds (with 5 seeds the interval is optimistic" in first
    html = (run / "report.html").read_text()
    assert html.index('<div class="box">') < html.index("<p>Task:")
    assert comparison_text(load_summary(run)).rstrip().endswith("before claiming a difference)")
    few = synthetic_run(tmp_path / "few", "breastmnist", {"baseline": [0.90, 0.91], "tpp": [0.93, 0.95]})
    assert "with 2 seeds the interval is optimistic" in write_report(few).read_text().split("\n\n")[1]


def test_one_seed_says_n_1_instead_of_a_zero_spread(tmp_path):
    from tppeft.reporting.report import write_report

    run = synthetic_run(tmp_path / "one", "breastmnist", {"baseline": [0.90], "tpp": [0.93]})
    md = write_report(run).read_text()
    assert "0.900 (n = 1)" in md and "± 0.000" not in md and "+0.030 (n = 1)" in md
    assert "too few seeds to tell" in md.split("\n\n")[1]
    from tppeft.reporting.report import splits_text

    assert splits_text({"train": 546, "val": 78, "test": 156}) == "train 546, val 78, test 156"


def test_figure_axes_show_the_effect_at_its_scale(tmp_path):
    import matplotlib.pyplot as plt

    from tppeft.reporting import plots

    run = synthetic_run(tmp_path / "s", "breastmnist", {"baseline": [0.850, 0.852, 0.851],
                                                      "tpp": [0.851, 0.853, 0.850]})
    summary = json.loads((run / "summary.json").read_text())
    seen = {}
    real_savefig = plt.Figure.savefig

    def grab(fig, path, *a, **k):
        seen[Path(path).name] = fig.axes[0]
        return real_savefig(fig, path, *a, **k)

    import pytest as _pytest

    with _pytest.MonkeyPatch.context() as mp:
        mp.setattr(plt.Figure, "savefig", grab)
        plots.plot_metric_by_arm(summary, run / "m.png")
        plots.plot_paired(summary, run / "p.png")
    lo, hi = seen["m.png"].get_ylim()
    assert hi - lo >= plots.MIN_SPAN  # a 0.003 spread is drawn on a 0.1 axis, not blown up to fill it
    xlo, xhi = seen["p.png"].get_xlim()
    assert xlo < 0 < xhi and xhi - xlo >= plots.MIN_SPAN and abs(xlo + xhi) < 1e-9  # zero in the middle


def test_an_undefined_test_metric_is_named_left_out_and_never_judged(tmp_path, capsys):
    """A test split of one class: AUC is undefined in every run. summary.json says so with the reason instead of
    NaN statistics, the report says it in words, and the verdict on it claims nothing; ACC is reported as usual."""
    data = write_medmnist(tmp_path / "one_class_test.npz", n=(8, 4, 4))
    arrays = dict(np.load(data))
    arrays["test_labels"][:] = 1
    np.savez(data, **arrays)
    sets = ["pretext.probe=false", "data.image_size=32", "threads=1", "seeds=1", f"data.path={data}",
            "pretext.epochs=1", "finetune.epochs=1", "pretext.batch_size=4", "finetune.batch_size=4"]
    out = tmp_path / "run"
    assert main(["run", "-o", str(out), *[a for s in sets for a in ("--set", s)]]) == 0
    reason = "the test split holds images of one class only (1), and AUC needs two"
    captured = capsys.readouterr()
    assert f"note: test AUC is undefined: {reason}" in captured.err
    results = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert len(results) == 2 and all(r["test"]["auc"] is None and 0 <= r["test"]["acc"] <= 1 for r in results)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["undefined_metrics"] == {"auc": reason}
    for e in summary["arms"].values():
        assert (e["mean"]["auc"], e["std"]["auc"], e["ci95"]["auc"]) == (None, None, [None, None])
        assert e["nonfinite"] == {"auc": [0]} and isinstance(e["mean"]["acc"], float) and e["n"] == 1
    paired = summary["paired"]["tpp-baseline"]
    assert paired["auc"]["undefined"] == reason and paired["auc"]["n"] == 0 and paired["auc"]["mean"] is None
    assert paired["acc"]["n"] == 1 and "undefined" not in paired["acc"]
    assert verdict_lines(summary) == [f"`tpp` vs `baseline`: no verdict: test AUC is undefined ({reason})"]
    for name in ("report.md", "report.html"):
        text = (out / name).read_text()
        assert f"test AUC is undefined in every run: {reason}. It has no mean, spread or interval" in text, name
        assert f"no verdict: test AUC is undefined ({reason})" in text, name
        assert "AUC | undefined | —" in text or "<td>undefined</td>" in text, name
        assert not re.search(r"\bnan\b", re.sub(r"data:image/png;base64,[^\"]*", "", text), re.I), name
    assert "no verdict: test AUC is undefined" in captured.out


def test_the_report_says_whether_the_backbone_saw_the_data(tmp_path):
    from tppeft.reporting.report import saw_the_data, write_report

    b0_pool = [["pneumoniamnist", 4708], ["breastmnist", 546], ["busi_train", 546]]
    clean_pool = [{"file": "brain_mri_train.npz", "sha256": "ab", "splits": {"train": 4117}}]
    cases = [({"trained_on": b0_pool}, {}, "yes, by name",
              "By name, breastmnist is this data set: read the comparison as one on images the backbone has seen"),
             ({"trained_on": clean_pool}, {}, "no", "None of them is this data set: the backbone never saw"),
             ({"trained_on": clean_pool}, {"dataset": "brain_mri_64"}, "yes, by name", "By name, brain_mri_train.npz"),
             ({"trained_on": clean_pool}, {"backbone_saw_this_data": ["train"]}, "yes: train",
              "It saw the train split(s) of this very data file"),
             # image by image: what the keys found wins over the name, either way
             ({"trained_on": clean_pool}, {"dataset": "brain_mri_64", "backbone_saw_images": {
                 "image_size": 64, "train": [4117, 4117], "val": [0, 455], "test": [0, 1311]}},
              "yes: train 4,117 of 4,117 images", "pool holds 4,117 of 4,117 train, 0 of 455 val and 0 of 1,311 test "
              "images of this data: read the comparison as one on images the backbone has seen, unlabelled."),
             ({"trained_on": clean_pool}, {"dataset": "brain_mri_64", "backbone_saw_images": {
                 "image_size": 64, "train": [0, 546], "val": [0, 78], "test": [0, 156]}},
              "by name only (no image matches)", "pool holds 0 of 546 train, 0 of 78 val and 0 of 156 test images of "
              "this data; but by name, brain_mri_train.npz is this data set, so its images may be there resized"),
             ({"trained_on": clean_pool}, {"backbone_saw_images": {
                 "image_size": 64, "train": [0, 546], "val": [0, 78], "test": [0, 156]}},
              "no (image by image)", "Checked image by image (pixel for pixel at 64 px), its pre-training pool holds 0 "
              "of 546 train, 0 of 78 val and 0 of 156 test images of this data (a copy resized"),
             # the backbone's record says what its keys cover (b0: the same scan in another data set's form)
             ({"trained_on": b0_pool, "pool_keys": {"image_size": 64, "note": "every BUSI scan in each stored form"}},
              {"backbone_saw_images": {"image_size": 64, "train": [546, 546], "val": [58, 78], "test": [103, 156]}},
              "yes: train 546 of 546, val 58 of 78, test 103 of 156 images", "Checked image by image (pixel for "
              "pixel at 64 px; its keys: every BUSI scan in each stored form), its pre-training pool holds 546 of 546"),
             ({}, {}, "unknown", None)]
    for k, (backbone, seen, short, sentence) in enumerate(cases):
        run = synthetic_run(tmp_path / str(k), "breastmnist", {"baseline": [0.9, 0.91], "tpp": [0.9, 0.92]})
        summary = json.loads((run / "summary.json").read_text())
        summary.update(seen, backbone={**summary.get("backbone", {}), **backbone})
        write_json(run / "summary.json", summary)
        md = write_report(run).read_text()
        assert saw_the_data(summary) == short
        assert (sentence in md) if sentence else "pre-trained on" not in md


def test_the_arms_table_shows_the_validation_mean_to_choose_on():
    cfg = load_config(None, ["arms=[baseline, tpp]", "seeds=2"])
    records = [{"arm": a, "seed": s, "test": {"acc": 0.8, "auc": 0.6}, "val": {"acc": 0.7, "auc": v},
                "seconds": 2.0, "best_epoch": 1, "finetune_epochs": 7, "pretext": None}
               for a, vals in (("baseline", (0.70, 0.74)), ("tpp", (0.80, 0.90))) for s, v in enumerate(vals)]
    summary = summarize(records, cfg, {"dataset": "toy"}, ["acc", "auc"], "auc")
    table = arms_rows(summary)
    col = table.header.index("val AUC (mean)")
    assert [row[col] for row in table.rows] == ["0.720", "0.850"]
    summary["arms"]["tpp"]["runs"][0]["val"] = {}  # an older record without validation metrics: left out
    assert arms_rows(summary).rows[1][col] == "0.900"


def test_the_report_says_how_baseline_matched_was_charged(tmp_path):
    from tppeft.reporting.report import write_report

    budget = {"extra_epochs": 27, "tpp_stage_in_finetune_epochs": 210.4, "pretext_flops_per_image_step": 3.2e9,
              "finetune_flops_per_image_step": 1.6e9, "rule": "r"}
    for k, (shared, sentence) in enumerate([
            (1, "The TPP stage costs 210.40 fine-tuning epochs of training compute (3200.0 vs 1600.0 MFLOPs per "
                "image and step, forward + backward, counted), rounded up."),
            (8, "counted); shared by 8 fine-tuning runs (`baseline_matched.stage_shared_by`: one stage reused 8 "
                "times), that is 26.30 epochs each, rounded up. This comparison itself ran a stage for every `tpp` "
                "run.")]):
        run = synthetic_run(tmp_path / str(k), "toy", {"baseline": [0.9, 0.91], "tpp": [0.9, 0.92],
                                                        "baseline_matched": [0.9, 0.93]})
        summary = json.loads((run / "summary.json").read_text())
        summary.update(baseline_matched={**budget, "stage_shared_by": shared}, finetune={"epochs": 73})
        write_json(run / "summary.json", summary)
        md = write_report(run).read_text()
        assert "`baseline_matched`: 73 + 27 fine-tuning epochs." in md and sentence in md
        assert ("shared by" in md) == (shared > 1)


def test_the_report_gives_tpps_gain_on_the_test_images_without_a_twin_and_says_where_it_reads_otherwise():
    """summary.json's paired_without_twin (records' test_without_twin): listed, and a reading that differs from the
    whole test split's named; a summary without it says nothing."""
    from tppeft.reporting.report import without_twin_text

    cfg = load_config(None, ["arms=[baseline, tpp]", "seeds=6"])
    test = {"baseline": [0.80, 0.82, 0.81, 0.80, 0.79, 0.81], "tpp": [0.85, 0.86, 0.87, 0.85, 0.84, 0.86]}
    free = {"baseline": [0.70, 0.75, 0.72, 0.70, 0.71, 0.73], "tpp": [0.71, 0.74, 0.73, 0.69, 0.72, 0.72]}
    records = [{"arm": a, "seed": s, "test": {"acc": 0.8, "auc": test[a][s]}, "test_without_twin": {"auc": free[a][s]},
                "seconds": 2.0, "best_epoch": 1, "finetune_epochs": 7, "pretext": None}
               for a in ("baseline", "tpp") for s in range(6)]
    summary = summarize(records, cfg, {"dataset": "x", "data": {"split_near_copies": {
        "test_without_twin_in_train": 109}}}, ["acc", "auc"], "auc")
    d = summary["paired_without_twin"]["tpp-baseline"]["auc"]
    assert d["n"] == 6 and d["wins"] == 3 and abs(d["mean"]) < 1e-12
    text = without_twin_text(summary)
    assert text.startswith("On the 109 test images without a near-twin among the training images")
    assert "tpp − baseline +0.000" in text and "tpp better in 3 of 6" in text
    assert "changes for tpp − baseline (no clear difference on those images, TPP better on the whole" in text
    for r in records:
        r.pop("test_without_twin")
    plain = summarize(records, cfg, {"dataset": "x"}, ["acc", "auc"], "auc")
    assert "paired_without_twin" not in plain and without_twin_text(plain) is None


def test_a_multi_class_comparison_reports_each_classs_auc_named_and_paired(tmp_path, capsys):
    """Three classes, the test split without class 2: each run records each class's one-vs-rest AUC (as its test
    scores give them), summary.json has their means and paired differences, class 2's is undefined with the reason,
    and the report names the classes in its tables. The fine-tuning log line keeps the whole split's validation
    metrics; metrics.jsonl has each class's too."""
    rng = np.random.default_rng(0)
    labels = np.r_[np.arange(12) % 3, np.arange(6) % 3, np.arange(6) % 2]  # train, val, test: test without 2
    data = tmp_path / "three.npz"
    np.savez(data, images=rng.integers(0, 256, (24, 28, 28), dtype=np.uint8), labels=labels,
             split=np.repeat([0, 1, 2], [12, 6, 6]), class_names=np.array(["normal", "benign", "malignant"]))
    sets = ["pretext.probe=false", "data.image_size=32", "threads=1", "seeds=2", f"data.path={data}",
            "pretext.epochs=1", "finetune.epochs=1", "pretext.batch_size=4", "finetune.batch_size=4"]
    out = tmp_path / "run"
    assert main(["run", "-o", str(out), *[a for s in sets for a in ("--set", s)]]) == 0
    logged = capsys.readouterr()
    epoch_lines = [x for x in (logged.out + logged.err).splitlines() if "finetune epoch" in x]
    assert epoch_lines and all("val_auc " in x and "val_auc_" not in x for x in epoch_lines)
    table = logged.out[logged.out.rindex("| comparison |"):]  # the console's table: the whole split, a pointer
    assert "| tpp − baseline | AUC |" in table and "AUC benign" not in table
    assert "Each class's paired differences: report.md, \"By class\"." in table
    finetuned = [json.loads(x) for x in (out / "runs" / "tpp" / "seed0" / "metrics.jsonl").read_text().splitlines()]
    assert {"auc_0", "auc_1"} <= set(next(x for x in finetuned if x.get("stage") == "finetune")["val"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metrics"] == ["acc", "auc", "auc_0", "auc_1", "auc_2"]
    digests = summary["data"]["label_sha256"]  # the labels alone: what compare --pair-by-labels pairs on
    assert set(digests) == {"train", "val", "test"} and digests["test"] != summary["data"]["split_sha256"]["test"]
    assert summary["undefined_metrics"] == {
        "auc_2": "the test split holds no image of class malignant, and its one-vs-rest AUC needs some"}
    for r in summary["arms"]["tpp"]["runs"]:
        with np.load(out / "runs" / "tpp" / f"seed{r['seed']}" / "test_scores.npz") as f:
            scores, labels = f["scores"], f["labels"].reshape(-1)
        for c in (0, 1):
            assert r["test"][f"auc_{c}"] == pytest.approx(roc_auc_score(labels == c, scores[:, c]), abs=1e-6)
    paired = summary["paired"]["tpp-baseline"]
    assert paired["auc_0"]["n"] == 2 and paired["auc_2"]["undefined"]
    report = (out / "report.md").read_text()
    by_class = report[report.index("## By class"):]
    assert "test AUC benign" not in report[:report.index("## By class")]  # the whole split's tables: no class
    assert re.search(r"\| tpp \| benign \| 0\.\d+ ± 0\.\d+ \|", by_class)
    assert "| tpp | malignant | undefined |" in by_class and "| tpp − baseline | AUC normal |" in by_class
    assert "test AUC malignant is undefined in every run" in report


def test_the_report_says_when_tpp_reads_differently_on_different_classes():
    """Per-class AUCs whose paired readings differ (a clear gain on one class, none on another) get a sentence
    naming the classes; where every class reads alike, none."""
    cfg = load_config(None, ["arms=[baseline, tpp]", "seeds=8"])
    gain = [0.10, 0.12, 0.09, 0.11, 0.10, 0.13, 0.08, 0.12]
    noise = [0.02, -0.03, 0.01, -0.02, 0.03, -0.01, 0.02, -0.02]
    records = [{"arm": arm, "seed": s, "best_epoch": 1, "finetune_epochs": 5, "seconds": 1.0, "pretext": None,
                "test": {"acc": 0.7, "auc": 0.7, "auc_0": 0.6 + (gain[s] if arm == "tpp" else 0),
                         "auc_1": 0.8 + (noise[s] if arm == "tpp" else 0)}}
               for s in range(8) for arm in ("baseline", "tpp")]
    meta = {"dataset": "x", "class_names": ["normal", "malignant"]}
    summary = summarize(records, cfg, meta, ["acc", "auc", "auc_0", "auc_1"], "auc")
    text = per_class_text(summary)
    assert "tpp − baseline: tpp better for normal (+0.106, tpp better in 8 of 8)" in text
    assert "no clear difference for malignant" in text
    for r in records:
        r["test"]["auc_1"] = r["test"]["auc_0"]
    assert per_class_text(summarize(records, cfg, meta, ["acc", "auc", "auc_0", "auc_1"], "auc")) is None
