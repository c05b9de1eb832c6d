"""Summary statistics over seeds: mean, sample std, percentile-bootstrap confidence intervals, paired differences.

Written with numpy rather than ``scipy.stats.bootstrap`` because the percentile bootstrap of a mean is three
lines and scipy would be a dependency for nothing else.
"""

from __future__ import annotations

import math

import numpy as np

CI_LEVEL = 0.95
RESAMPLES = 10_000


def finite(values: list[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(v)]


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value)."""
    if not values:
        return float("nan"), float("nan")
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def bootstrap_ci(values: list[float], level: float = CI_LEVEL, resamples: int = RESAMPLES,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean (fixed resampling seed, so a summary is reproducible).

    Undefined (NaN) for fewer than 2 values. With few seeds it is too narrow (a percentile bootstrap of n
    values spreads like a standard error with n, not n-1, in the denominator and cannot reach beyond the
    observed values): read it as a guide, not a test.
    """
    if len(values) < 2:
        return float("nan"), float("nan")
    arr = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = arr[rng.integers(0, len(arr), size=(resamples, len(arr)))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def sign_test_p(wins: int, losses: int) -> float:
    """Two-sided exact sign test over seeds (ties left out): the chance of a split at least this uneven if
    either arm were equally likely to win each seed. With 5 seeds even 5-0 gives p = 0.0625."""
    n = wins + losses
    if n == 0:
        return 1.0
    k = min(wins, losses)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def paired_difference(a: dict[int, float | None], b: dict[int, float | None]) -> dict:
    """Statistics of a[seed] - b[seed] over the seeds where both have a finite value."""
    seeds = sorted(s for s in set(a) & set(b) if finite([a[s]]) and finite([b[s]]))
    diffs = [float(a[s]) - float(b[s]) for s in seeds]
    mean, std = mean_std(diffs)
    lo, hi = bootstrap_ci(diffs)
    wins, losses = sum(d > 0 for d in diffs), sum(d < 0 for d in diffs)
    return {"mean": mean, "std": std, "ci95": [lo, hi], "wins": int(wins), "ties": len(diffs) - wins - losses,
            "losses": int(losses), "n": len(diffs), "sign_test_p": sign_test_p(wins, losses),
            "per_seed": dict(zip(seeds, diffs, strict=True))}
