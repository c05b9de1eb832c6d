"""Summary statistics over seeds: mean, sample std, percentile-bootstrap confidence intervals."""

from __future__ import annotations

import math

import numpy as np


def finite(values: list[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(v)]


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value)."""
    if not values:
        return float("nan"), float("nan")
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def bootstrap_ci(values: list[float], level: float = 0.95, resamples: int = 10_000,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean. With few seeds it is narrow and optimistic: read it as a guide."""
    if not values:
        return float("nan"), float("nan")
    arr = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = arr[rng.integers(0, len(arr), size=(resamples, len(arr)))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def paired_difference(a: dict[int, float], b: dict[int, float]) -> dict:
    """Statistics of a[seed] - b[seed] over the seeds both have."""
    seeds = sorted(set(a) & set(b))
    diffs = finite([a[s] - b[s] for s in seeds])
    mean, std = mean_std(diffs)
    lo, hi = bootstrap_ci(diffs)
    return {"mean": mean, "std": std, "ci95": [lo, hi], "wins": int(sum(d > 0 for d in diffs)),
            "ties": int(sum(d == 0 for d in diffs)), "n": len(diffs), "per_seed": dict(zip(seeds, diffs, strict=False))}
