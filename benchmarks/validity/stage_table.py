"""The kept comparisons side by side: what each TPP stage did before any label (linear probe, movement of the
target parameters) next to what TPP gained after fine-tuning. Reads the ``summary.json`` of every result folder
under ROOT (default ``results/``) whose ``tpp`` runs carry the probe diagnostics, and prints one table.

    python benchmarks/validity/stage_table.py [ROOT] [--json out.json]

Per folder: the data set as the run recorded it (rows on different data read different validation images in the
probe's validation change), the pretext task, the images the stage saw, the fine-tuning epochs, the probe of the
primary metric on test (mean over the distinct stages: one for a comparison with ``pretext.stage_seed``), its change
on test and on validation, LoRA's ``‖BA‖/‖W‖`` (mean over runs), and the paired differences tpp − baseline and
tpp − baseline_matched on the primary metric (mean, 95% CI, seeds TPP won). The last lines are Spearman's rank
correlation between each probe change and tpp − baseline over the rows: descriptive only, the rows differ in data,
epochs and seeds. Only the validation change is one a user has before deciding (the test change reads test
labels). A folder whose ``tpp`` runs are another's (a comparison merged from a kept one) is listed with that
folder's name and left out of the correlation.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from kept import arguments, print_table, result_folders, write_rows
from scipy.stats import spearmanr


def _diff(paired: dict, key: str, metric: str) -> dict | None:
    d = (paired.get(key) or {}).get(metric)
    if d is None or d.get("mean") is None:  # no such runs (a merged folder without that arm's runs)
        return None
    return {"mean": d["mean"], "ci95": d["ci95"], "wins": d["wins"], "n": d["n"]}


def row(folder: Path, root: Path) -> dict | None:
    """One folder's stage diagnostics and TPP differences, or None when its tpp runs have no probe."""
    s = json.loads((folder / "summary.json").read_text())
    runs = (s.get("arms", {}).get("tpp") or {}).get("runs") or []
    stages = {}
    for r in runs:
        p = r.get("pretext") or {}
        if p.get("probe_before") and p.get("probe_after"):  # one entry per distinct stage: the same folder, once
            stages[(p.get("shared") or {}).get("folder") or r["seed"]] = p
    if not stages:
        return None
    metric = s["primary_metric"]
    before, after, val_before, val_after = (float(np.mean([p[f"probe_{when}"][split] for p in stages.values()]))
                                            for split in ("test", "val") for when in ("before", "after"))
    moved = [((r.get("pretext") or {}).get("movement") or {}).get("lora_update_ratio", {}).get("mean") for r in runs]
    moved = [m for m in moved if m is not None]
    tpp_runs = tuple(sorted((r["seed"], json.dumps(r["test"], sort_keys=True)) for r in runs))
    return {"folder": folder.relative_to(root).as_posix(), "data": s["dataset"], "tpp_runs": tpp_runs, "metric": metric,
            "pretext": s["pretext"]["method"],
            "stage_images": (s.get("data") or {}).get("pretext_train"), "finetune_epochs": s["finetune"]["epochs"],
            "stages": len(stages), "probe_before": before, "probe_after": after, "probe_change": after - before,
            "probe_val_before": val_before, "probe_val_after": val_after, "probe_val_change": val_after - val_before,
            "lora_update_ratio": float(np.mean(moved)) if moved else None,
            "tpp-baseline": _diff(s.get("paired", {}), "tpp-baseline", metric),
            "tpp-baseline_matched": _diff(s.get("paired", {}), "tpp-baseline_matched", metric)}


def _fmt(d: dict | None) -> str:
    if d is None:
        return "—"
    return f"{d['mean']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}] {d['wins']}/{d['n']}"


def main(argv: list[str] | None = None) -> int:
    args = arguments(__doc__, argv)
    rows = [r for f in result_folders(args.root) if (r := row(f, args.root))]
    first: dict[tuple, str] = {}
    for r in rows:
        r["same_tpp_runs_as"] = first.setdefault(r.pop("tpp_runs"), r["folder"])
        if r["same_tpp_runs_as"] == r["folder"]:
            r["same_tpp_runs_as"] = None
    if not rows:
        print(f"no result folder under {args.root} has TPP runs with probe diagnostics", file=sys.stderr)
        return 1
    lines = []
    for r in rows:
        moved = "—" if r["lora_update_ratio"] is None else f"{r['lora_update_ratio']:.2f}"
        name = r["folder"] + (f" (tpp runs of {r['same_tpp_runs_as']})" if r["same_tpp_runs_as"] else "")
        lines.append(f"| {name} | {r['data']} | {r['pretext']} | {r['stage_images']} | {r['finetune_epochs']} | "
                     f"{r['stages']} | "
                     f"{r['probe_before']:.3f} → {r['probe_after']:.3f} | {r['probe_change']:+.3f} | "
                     f"{r['probe_val_change']:+.3f} | {moved} | "
                     f"{_fmt(r['tpp-baseline'])} | {_fmt(r['tpp-baseline_matched'])} |")
    print_table(["folder", "data", "pretext", "stage images", "ft epochs", "stages", "probe test: before → after",
                 "change", "probe val change", "LoRA ‖BA‖/‖W‖", "tpp − baseline", "tpp − baseline_matched"], lines)
    counted = [r for r in rows if r["tpp-baseline"] and not r["same_tpp_runs_as"]]
    if len(counted) >= 3:
        print()
        for key, what in (("probe_val_change", "on validation (known before any test label is read)"),
                          ("probe_change", "on test (reads test labels: no guide to a decision)")):
            rho = spearmanr([r[key] for r in counted], [r["tpp-baseline"]["mean"] for r in counted]).statistic
            print(f"Spearman's rank correlation, probe change {what} vs tpp − baseline, over {len(counted)} rows: "
                  f"{rho:+.2f}")
        print("(descriptive: the rows differ in data, fine-tuning epochs and seeds)")
    write_rows(args.json, rows)
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
