"""How small a TPP effect each kept comparison could have seen: what a "tie" rules out, and what it does not.

For every result folder under ROOT (default ``results/``) and each paired difference in its ``summary.json``
(tpp − baseline, tpp − baseline_matched, ... on the primary metric) one row: seeds, mean, the 95% bootstrap
interval the report gives, the standard deviation of the per-seed differences, and the smallest true difference a
paired t-test at 5% (two-sided) would find with 80% power, given that spread and that many seeds:
``(t(0.975, n-1) + t(0.80, n-1)) · sd / √n``. A tie whose interval is [−0.008, +0.020] rules out a gain above
0.020; a comparison whose detectable difference is 0.015 could not have told a gain of 0.010 from none. The
detectable difference uses the observed spread as if it were the true one: a planning figure, not a test.

    python benchmarks/validity/resolution.py [ROOT] [--json out.json]

A paired difference that another folder already lists (a comparison merged from kept runs) is named once.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
from kept import arguments, print_table, result_folders, write_rows
from scipy.stats import t as student_t

ALPHA, POWER = 0.05, 0.80


def detectable(sd: float, n: int) -> float | None:
    """The smallest true paired difference found with :data:`POWER` by a two-sided paired t-test at
    :data:`ALPHA`, with per-seed spread ``sd`` over ``n`` seeds (None below 2 seeds)."""
    if n < 2:
        return None
    return float((student_t.ppf(1 - ALPHA / 2, n - 1) + student_t.ppf(POWER, n - 1)) * sd / math.sqrt(n))


def rows(folder: Path, root: Path) -> list[dict]:
    """One row per paired difference of the folder's primary metric that has per-seed values."""
    s = json.loads((folder / "summary.json").read_text())
    metric = s.get("primary_metric")
    out = []
    for pair, by_metric in (s.get("paired") or {}).items():
        d = (by_metric or {}).get(metric) or {}
        per_seed = {int(k): v for k, v in (d.get("per_seed") or {}).items() if v is not None and math.isfinite(v)}
        if len(per_seed) < 2:
            continue
        values = np.array([per_seed[k] for k in sorted(per_seed)])
        sd = float(values.std(ddof=1))
        out.append({"folder": folder.relative_to(root).as_posix(), "pair": pair, "metric": metric,
                    "n": len(values), "mean": float(values.mean()), "ci95": d.get("ci95"), "sd": sd,
                    "detectable": detectable(sd, len(values)), "wins": d.get("wins"),
                    "per_seed": tuple(sorted(per_seed.items()))})
    return out


def main(argv: list[str] | None = None) -> int:
    args = arguments(__doc__, argv)
    found = [r for f in result_folders(args.root) for r in rows(f, args.root)]
    if not found:
        print(f"no result folder under {args.root} has paired differences with per-seed values", file=sys.stderr)
        return 1
    seen: set[tuple] = set()
    table = []
    for r in found:
        key = (r["pair"], r.pop("per_seed"))
        if key not in seen:
            seen.add(key)
            table.append(r)
    lines = []
    for r in table:
        lo, hi = r["ci95"] or (None, None)
        ci = "—" if lo is None else f"[{lo:+.3f}, {hi:+.3f}]"
        shown = "—" if r["detectable"] is None else f"{r['detectable']:.3f}"
        lines.append(f"| {r['folder']} | {r['pair']} ({r['metric']}) | {r['n']} | {r['mean']:+.3f} | {ci} | "
                     f"{r['sd']:.3f} | {shown} | {r['wins']}/{r['n']} |")
    print_table(["folder", "difference", "seeds", "mean", "95% CI", "sd per seed", "detectable (80% power)", "wins"],
                lines)
    eight = [r["detectable"] for r in table if r["n"] >= 8 and r["detectable"] is not None]
    if eight:
        print(f"\nWith 8 seeds or more ({len(eight)} differences): detectable difference median "
              f"{np.median(eight):.3f}, range {min(eight):.3f}–{max(eight):.3f} (the metric's units; a planning "
              "figure from the observed spread)")
    write_rows(args.json, table)
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
