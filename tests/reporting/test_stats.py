"""Statistics over seeds on hand-checked numbers, and the summary that carries them."""

import itertools
import math

import numpy as np
import pytest

from tppeft.config import load_config
from tppeft.experiment.comparison import summarize
from tppeft.reporting.stats import bootstrap_ci, mean_std, paired_difference, sign_test_p


def exact_bootstrap_quantiles(values, level=0.95):
    """Every one of the n^n resamples, equally likely: the exact distribution the bootstrap samples from."""
    means = sorted(np.mean(c) for c in itertools.product(values, repeat=len(values)))
    return np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])


def test_bootstrap_ci_matches_exact_enumeration():
    assert bootstrap_ci([0.0, 1.0]) == (0.0, 1.0)  # resample means 0, .5, 1 with chances 1/4, 1/2, 1/4
    for values in ([0.70, 0.74, 0.79], [0.81, 0.83, 0.80, 0.86, 0.84]):
        lo, hi = bootstrap_ci(values)
        elo, ehi = exact_bootstrap_quantiles(values)
        step = (max(values) - min(values)) / len(values)  # one grid step of the resample means
        assert abs(lo - elo) <= step and abs(hi - ehi) <= step
        assert min(values) - 1e-9 <= lo < np.mean(values) < hi <= max(values) + 1e-9
    assert bootstrap_ci([0.3, 0.5, 0.4]) == bootstrap_ci([0.3, 0.5, 0.4])  # fixed resampling seed
    assert all(math.isnan(x) for x in bootstrap_ci([0.5]))  # undefined for one value


def test_sign_test_by_hand():
    assert sign_test_p(5, 0) == pytest.approx(2 / 32)
    assert sign_test_p(4, 1) == pytest.approx(2 * 6 / 32)
    assert sign_test_p(3, 3) == 1.0 and sign_test_p(0, 0) == 1.0
    assert sign_test_p(10, 0) == pytest.approx(2 / 1024)


def test_paired_difference_by_hand():
    tpp = {0: 0.80, 1: 0.70, 2: 0.90, 3: 0.50, 4: None}
    other = {0: 0.70, 1: 0.75, 2: 0.85, 3: 0.50, 4: 0.6, 5: 0.9}
    d = paired_difference(tpp, other)
    diffs = [0.10, -0.05, 0.05, 0.0]  # seeds 0..3; seed 4 has no tpp value, seed 5 no tpp run
    assert d["n"] == 4 and (d["wins"], d["ties"], d["losses"]) == (2, 1, 1)
    assert d["mean"] == pytest.approx(np.mean(diffs)) and d["std"] == pytest.approx(np.std(diffs, ddof=1))
    assert d["ci95"][0] < d["mean"] < d["ci95"][1]
    assert d["sign_test_p"] == pytest.approx(1.0) and sorted(d["per_seed"]) == [0, 1, 2, 3]
    assert mean_std([0.2, 0.4]) == pytest.approx((0.3, math.sqrt(0.02)))


def _record(arm, seed, auc, acc=0.8):
    return {"arm": arm, "seed": seed, "test": {"acc": acc, "auc": auc}, "seconds": 1.0, "finetune_epochs": 3,
            "pretext": {"loss_start": 0.5, "loss_end": 0.4} if arm == "tpp" else None}


def test_summary_has_per_arm_ci_and_tpp_against_every_other_arm():
    cfg = load_config(None, ["arms=[baseline, tpp, eva]", "seeds=3"])
    auc = {"baseline": [0.80, 0.82, 0.78], "tpp": [0.84, 0.83, 0.85], "eva": [0.85, 0.86, 0.87]}
    records = [_record(a, s, auc[a][s]) for s in range(3) for a in cfg.arms]
    s = summarize(records, cfg, {}, ["acc", "auc"], "auc")
    base = s["arms"]["baseline"]
    assert base["mean"]["auc"] == pytest.approx(0.80) and base["std"]["auc"] == pytest.approx(0.02)
    assert base["ci95"]["auc"] == list(bootstrap_ci(auc["baseline"]))
    assert set(s["paired"]) == {"tpp-baseline", "tpp-eva"}
    vs_base, vs_eva = s["paired"]["tpp-baseline"]["auc"], s["paired"]["tpp-eva"]["auc"]
    assert vs_base["wins"] == 3 and vs_base["mean"] == pytest.approx(0.04) and vs_base["ci95"][0] > 0
    assert vs_eva["wins"] == 0 and vs_eva["losses"] == 3 and vs_eva["ci95"][1] < 0
    no_tpp = summarize([r for r in records if r["arm"] != "tpp"], load_config(None, ["arms=[baseline, eva]"]), {},
                       ["acc", "auc"], "auc")
    assert no_tpp["paired"] == {}
