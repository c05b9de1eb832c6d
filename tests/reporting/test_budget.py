"""The report's check that fine-tuning was long enough: arms whose best validation epoch came late in most seeds."""

import re
from pathlib import Path

from tppeft.config import load_config
from tppeft.experiment.comparison import summarize
from tppeft.io import write_json
from tppeft.reporting.budget import BUDGET_TITLE, MIN_EPOCHS, budget_lines, late_best_arms, unmatched_compute_line
from tppeft.reporting.report import comparison_text, write_report


def summary(best: dict[str, list[int]], epochs: dict[str, int]) -> dict:
    """A comparison's summary whose runs stopped at the given best validation epochs of the given budgets."""
    arms = list(best)
    cfg = load_config(None, [f"arms=[{', '.join(arms)}]", f"seeds={len(best[arms[0]])}"])
    records = [{"arm": a, "seed": s, "test": {"acc": 0.8, "auc": 0.7 + 0.01 * s}, "seconds": 2.0, "best_epoch": b,
                "finetune_epochs": epochs[a], "pretext": None} for a in arms for s, b in enumerate(best[a])]
    return summarize(records, cfg, {"dataset": "toy"}, ["acc", "auc"], "auc")


def test_late_in_half_the_seeds_is_flagged_early_is_not():
    s = summary({"baseline": [15, 12, 9, 11], "tpp": [9, 10, 11, 12]}, {"baseline": 15, "tpp": 15})
    (late,) = late_best_arms(s)  # 12 of 15 is past three quarters, 11 is not
    assert (late.arm, late.epochs, late.late, late.runs, late.best_epochs) == ("baseline", 15, 2, 4, (15, 12, 9, 11))
    lines = budget_lines(s)
    assert len(lines) == 2 and lines[0].startswith("`baseline`: ") and "2 of 4 seeds (15, 12, 9, 11)" in lines[0]
    assert "raise `finetune.epochs`" in lines[1]


def test_each_arm_is_judged_by_its_own_budget():
    # baseline_matched fine-tunes longer: its best epoch 40 is early in 73, though late for the others' 15
    s = summary({"baseline": [14, 15], "tpp": [15, 13], "baseline_matched": [40, 31]},
                {"baseline": 15, "tpp": 15, "baseline_matched": 73})
    assert [a.arm for a in late_best_arms(s)] == ["baseline", "tpp"]
    assert "read TPP against `baseline_matched` here" in budget_lines(s)[-1]
    s = summary({"baseline": [14, 15], "tpp": [15, 13], "baseline_matched": [70, 73]},
                {"baseline": 15, "tpp": 15, "baseline_matched": 73})
    assert [a.arm for a in late_best_arms(s)] == ["baseline", "tpp", "baseline_matched"]
    assert "raise `finetune.epochs`" in budget_lines(s)[-1]


def test_no_reading_for_very_short_budgets_or_when_nothing_is_late():
    short = MIN_EPOCHS - 1
    assert budget_lines(summary({"baseline": [short] * 3, "tpp": [short] * 3}, {"baseline": short, "tpp": short})) == []
    assert budget_lines(summary({"baseline": [3, 5, 8], "tpp": [2, 12, 4]}, {"baseline": 16, "tpp": 16})) == []


def test_the_report_and_the_console_table_show_it(tmp_path):
    s = summary({"baseline": [8, 7, 8], "tpp": [3, 2, 8]}, {"baseline": 8, "tpp": 8})
    assert BUDGET_TITLE in comparison_text(s) and "baseline: best validation epoch" in comparison_text(s)
    write_json(tmp_path / "summary.json", s)
    md = write_report(tmp_path).read_text()
    box = md.split(f"> **{BUDGET_TITLE}**", 1)[1].split("\n\n", 1)[0]
    assert "> - `baseline`: best validation epoch in the last quarter of its 8 fine-tuning epochs in 3 of 3" in box
    assert "`tpp`:" not in box  # one late seed of three is not most
    assert BUDGET_TITLE in (tmp_path / "report.html").read_text()
    write_json(tmp_path / "summary.json", summary({"baseline": [2, 3, 4], "tpp": [3, 2, 4]},
                                                  {"baseline": 8, "tpp": 8}))
    assert BUDGET_TITLE not in write_report(tmp_path).read_text()


def test_a_comparison_without_baseline_matched_says_its_compute_is_not_matched(tmp_path):
    line = "No `baseline_matched` arm: the TPP stage's compute is not matched"
    s = summary({"baseline": [2, 3], "tpp": [3, 2]}, {"baseline": 8, "tpp": 8})
    assert unmatched_compute_line(s).startswith(line)
    # every study it names (where TPP beat the matched baseline, and where the same stage did not) is a bundled
    # config with a kept result
    from tppeft.bundled import bundled_configs
    named = re.findall(r"`(study_[a-z0-9_]+)`", unmatched_compute_line(s))
    assert len(named) == 5
    for name in named:
        assert name in bundled_configs()
        assert (Path(__file__).resolve().parents[2] / "results" / "validity" / name.removeprefix("study_")).is_dir()
    recipe = re.search(r"bundled config `([a-z0-9_]+)`", unmatched_compute_line(s)).group(1)
    assert recipe in bundled_configs()  # the same setting for one's own data
    write_json(tmp_path / "summary.json", s)
    assert line in write_report(tmp_path).read_text() and line.replace("`", "") in comparison_text(s)
    matched = summary({"baseline": [2, 3], "tpp": [3, 2], "baseline_matched": [5, 6]},
                      {"baseline": 8, "tpp": 8, "baseline_matched": 20})
    assert unmatched_compute_line(matched) is None
    assert unmatched_compute_line(summary({"baseline": [2, 3]}, {"baseline": 8})) is None  # no TPP arm


def test_a_compute_matched_baseline_below_the_plain_one_is_named():
    """`baseline_matched` below `baseline` in most seeds: its extra epochs hurt, and the report says what that means
    for TPP's difference with it; below in half the seeds or fewer, nothing."""
    from tppeft.reporting.budget import matched_below_line

    cfg = load_config(None, ["arms=[baseline, tpp, baseline_matched]", "seeds=4"])

    def made(matched: list[float]) -> dict:
        auc = {"baseline": [0.90, 0.88, 0.89, 0.91], "tpp": [0.90] * 4, "baseline_matched": matched}
        records = [{"arm": a, "seed": s, "test": {"acc": 0.8, "auc": v}, "seconds": 2.0, "best_epoch": 3,
                    "finetune_epochs": 10, "pretext": None} for a, vs in auc.items() for s, v in enumerate(vs)]
        return summarize(records, cfg, {"dataset": "toy"}, ["acc", "auc"], "auc")

    below = made([0.88, 0.87, 0.90, 0.89])
    assert matched_below_line(below).startswith("`baseline_matched` scored below `baseline` in 3 of 4 seeds")
    assert "scored below" in comparison_text(below)
    assert matched_below_line(made([0.88, 0.89, 0.90, 0.89])) is None  # below in 2 of 4: not most
    assert matched_below_line(summary({"baseline": [2, 3], "tpp": [3, 2]}, {"baseline": 8, "tpp": 8})) is None
