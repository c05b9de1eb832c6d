"""Seed-paired differences between any two arms, of one comparison or of two (``tppeft compare --pair``).

Two comparisons can be paired seed by seed on a split only when seed s fine-tuned on the same labelled images in
both and was scored on the same images of that split. Where both summaries record each split's SHA-256
(``data.split_sha256``), that means the same training images and labelled-subset keys, and the same images of the
split: two data files that share their training and test images pair on test even when their validation images
differ. Folders made before that record must agree in the data file, limit, split and labelled-subset keys. What
else differs between them (fine-tuning length, pretext task, ...) is the question the pairing answers; it is
listed under the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from tppeft.engine.config import is_runtime_key
from tppeft.errors import ReportError
from tppeft.reporting.document import Block, Heading, Para, Table
from tppeft.reporting.report import metric_label, paired_cells
from tppeft.reporting.stats import paired_difference
from tppeft.rundir import CONFIG

# The data keys that fix the images of each split and the labelled subset each seed draws.
PAIRING_KEYS = ("data.path", "data.limit", "data.split", "data.label_fraction", "data.labels_per_class",
                "data.volume.split", "data.volume.split_seed", "data.volume.split_fractions")
SPLITS = ("test", "val")
# The keys that, with the training images, fix the labelled subset each seed draws.
LABEL_KEYS = ("data.label_fraction", "data.labels_per_class")
SPLIT_NAMES = {"train": "training", "val": "validation", "test": "test"}


@dataclass(frozen=True)
class Side:
    run: int  # 0-based position of the folder among those compared
    arm: str


@dataclass(frozen=True)
class Pair:
    left: Side
    right: Side


def parse_pair(spec: str, n_runs: int) -> Pair:
    """``N:ARM,M:ARM`` (N, M: 1-based positions of the folders on the command line) as a :class:`Pair`."""
    sides = []
    for part in spec.split(","):
        run, _, arm = part.strip().partition(":")
        if not run.isdigit() or not arm or not 1 <= int(run) <= n_runs:
            raise ReportError(f"--pair '{spec}': expected N:ARM,M:ARM with N and M the positions (1..{n_runs}) of "
                              "the compared folders, e.g. --pair 2:tpp,1:tpp")
        sides.append(Side(int(run) - 1, arm))
    if len(sides) != 2:
        raise ReportError(f"--pair '{spec}': expected two sides, N:ARM,M:ARM")
    return Pair(*sides)


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        out.update(_flat(v, key + ".") if isinstance(v, dict) else {key: v})
    return out


def _pairing_identity(flat: dict) -> dict:
    return {k: v for k, v in flat.items() if any(k == p or k.startswith(p + ".") for p in PAIRING_KEYS)}


def _digests(summary: dict, key: str = "split_sha256") -> dict | None:
    return (summary.get("data") or {}).get(key)


def paired_splits(summaries: tuple[dict, dict], configs: tuple[dict, dict],
                  by_labels: bool = False) -> tuple[list[str], str]:
    """The splits (of :data:`SPLITS`) on which two comparisons' seeds can be paired, and why none or some cannot
    (empty when all can): by the splits' recorded SHA-256 where both summaries have them, else by config keys.
    ``by_labels`` (classification only): by the SHA-256 of the splits' labels alone (``data.label_sha256``), for
    two comparisons of the same images made otherwise (resized, preprocessed), which the user vouches for."""
    key = "label_sha256" if by_labels else "split_sha256"
    what = "labels" if by_labels else "images"
    da, db = (_digests(s, key) for s in summaries)
    ca, cb = configs
    if by_labels and not (da and db and all(s.get("task") == "classification" for s in summaries)):
        return [], ("--pair-by-labels pairs classification comparisons that record their labels' SHA-256 "
                    "(data.label_sha256; folders made before it was recorded lack it)")
    if da and db:
        why = [f"their training {what} differ (data.{key}.train)"] if da.get("train") != db.get("train") else []
        if keys := [k for k in LABEL_KEYS if ca.get(k) != cb.get(k)]:
            why.append(f"they differ in {', '.join(keys)}")
        if why:
            return [], " and ".join(why) + ", so a seed fine-tuned on other labelled images in each"
        same = [s for s in SPLITS if da.get(s) is not None and da.get(s) == db.get(s)]
        apart = [SPLIT_NAMES[s] for s in SPLITS if s not in same]
        return same, (f"their {' and '.join(apart)} {what} differ (data.{key})" if apart else "")
    ia, ib = _pairing_identity(ca), _pairing_identity(cb)
    if ia != ib:
        keys = sorted(k for k in set(ia) | set(ib) if ia.get(k) != ib.get(k))
        return [], f"they differ in {', '.join(keys)}, so a seed saw other labelled or test images in each"
    return list(SPLITS), ""


def differences(a: dict, b: dict, defaults: dict | None = None) -> list[str]:
    """The result-shaping keys (seeds and arms aside) where the flat configs ``a`` and ``b`` differ, as
    ``key: a → b``; a key one config.yaml lacks (written before the key existed: its default) shows as "absent",
    unless the other config holds it at its value in ``defaults`` (then nothing differs)."""
    absent = object()
    rows = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k, absent), b.get(k, absent)
        at_default = defaults is not None and k in defaults and (va if vb is absent else vb) == defaults[k]
        if k not in ("seeds", "arms") and va != vb and not ((va is absent or vb is absent) and at_default):
            rows.append(f"{k}: {'absent' if va is absent else va} → {'absent' if vb is absent else vb}")
    return rows


def _backbone_difference(left: dict, right: dict) -> list[str]:
    """The backbone files' SHA-256 (``summary.json``'s), where two comparisons ran on different ones."""
    a, b = ((s.get("backbone") or {}).get("sha256") for s in (left, right))
    return [f"backbone file (SHA-256) {a[:8]}… → {b[:8]}…"] if a and b and a != b else []


def _config(run_dir: Path) -> dict:
    """The folder's config.yaml (a full dump, every key present) as flat ``section.key`` items, runtime keys
    aside; read as data, since a finished folder's config needs no validation to be compared."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise ReportError(f"--pair needs each paired folder's {CONFIG} (to check that its seeds drew the same "
                          f"labelled images and test images): {path} is missing")
    saved = yaml.safe_load(path.read_text()) or {}
    return {k: v for k, v in _flat(saved).items() if not is_runtime_key(k)}


def _listed(words: list[str]) -> str:
    return " and ".join(words) if len(words) < 3 else ", ".join(words[:-1]) + " and " + words[-1]


def _differing_images(a: dict, b: dict, splits: list[str]) -> list[str]:
    """The names of the training split and of ``splits`` whose images two summaries record as different."""
    da, db = _digests(a) or {}, _digests(b) or {}
    return [SPLIT_NAMES[s] for s in ("train", *splits) if da.get(s) != db.get(s)]


def _scores(summary: dict, arm: str, split: str, metric: str) -> dict[int, float | None]:
    return {r["seed"]: (r.get(split) or {}).get(metric) for r in summary["arms"][arm]["runs"]}


def across_blocks(run_dirs: list[Path], summaries: list[dict], labels: list[str], specs: list[str],
                  defaults: dict | None = None, by_labels: bool = False) -> list[Block]:
    """The table of the ``--pair`` differences and what differs between the paired comparisons (``defaults``: the
    config's defaults as a dump, what a folder written before a key existed ran with; ``by_labels``: pair folders
    by their labels, :func:`paired_splits`)."""
    flat_defaults = _flat(defaults) if defaults is not None else None
    pairs = [parse_pair(s, len(run_dirs)) for s in specs]
    configs: dict[int, dict] = {}
    for pair in pairs:
        for side in (pair.left, pair.right):
            if side.arm not in summaries[side.run]["arms"]:
                raise ReportError(f"--pair: {labels[side.run]} has no arm '{side.arm}' (it has "
                                  f"{', '.join(summaries[side.run]['arms'])})")
            if side.run not in configs:
                configs[side.run] = _config(run_dirs[side.run])
    rows, notes, apart = [], [], []
    for pair in pairs:
        a, b = pair.left, pair.right
        left, right = f"{a.arm} @{a.run + 1}", f"{b.arm} @{b.run + 1}"
        splits = list(SPLITS)
        if a.run != b.run:
            splits, why = paired_splits((summaries[a.run], summaries[b.run]), (configs[a.run], configs[b.run]),
                                        by_labels)
            if not splits:
                raise ReportError(f"--pair: {labels[a.run]} and {labels[b.run]} cannot be paired by seed: {why}")
            if by_labels and (images := _differing_images(summaries[a.run], summaries[b.run], splits)) and (
                    line := f"@{b.run + 1} and @{a.run + 1} are paired by their labels (--pair-by-labels) although "
                            f"their {_listed(images)} images differ (data.split_sha256): each row takes the "
                            "i-th image of one for the i-th of the other") not in apart:
                apart.append(line)
            found = (differences(configs[b.run], configs[a.run], flat_defaults)
                     + _backbone_difference(summaries[b.run], summaries[a.run]))
            note = f"@{b.run + 1} → @{a.run + 1}: " + ("; ".join(found) or "no setting differs")
            if note not in notes:
                notes.append(note)
            if why and (line := f"@{b.run + 1} and @{a.run + 1} are paired on {' and '.join(splits)} only: "
                                 f"{why}") not in apart:
                apart.append(line)
        sa, sb = summaries[a.run], summaries[b.run]
        metrics = [m for m in sa["metrics"] if m in sb["metrics"]]
        metrics.sort(key=lambda m: m != sa["primary_metric"])
        found = False
        for split in splits:
            for m in metrics:
                d = paired_difference(_scores(sa, a.arm, split, m), _scores(sb, b.arm, split, m))
                if d["n"]:
                    rows.append([f"{left} − {right}", split, metric_label(m, sa), *paired_cells(d, who=left)])
                    found = True
        if not found:
            raise ReportError(f"--pair: {left} and {right} have no seed in common")
    text = ("Each row: the left arm minus the right one, seed by seed over the seeds both have, with its 95% "
            "bootstrap interval, the left arm's wins/ties/losses and the exact sign test. In paired comparisons "
            "from different folders each seed fine-tuned on the same labelled images and was scored on the same "
            "images of the row's split in both (checked: the splits' SHA-256 and the labelled-subset keys, or for "
            "folders made before the SHA-256 was recorded the data file, split and labelled-subset keys; with "
            "--pair-by-labels the labels' SHA-256 instead of the splits', for the same images made otherwise). "
            "Choose settings on the validation rows, never on the test rows.")
    runs = sorted({side.run for pair in pairs for side in (pair.left, pair.right)})
    text += " Runs: " + "; ".join(f"@{r + 1} = {labels[r]}" for r in runs) + "."
    blocks: list[Block] = [Heading("Paired differences across arms and runs"),
                           Table(["comparison", "split", "metric", "mean difference ± std", "95% bootstrap CI",
                                  "left wins/ties/losses", "sign test p", "reading"], rows), Para(text)]
    if notes:
        blocks.append(Para("What differs between the paired runs (right → left): " + " | ".join(notes) + "."))
    if apart:
        blocks.append(Para("; ".join(apart) + "."))
    return blocks
