"""What the validity tables share: their command line (ROOT, ``--json``), the kept result folders under ROOT, and
the Markdown table and JSON rows they print and write."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np


def arguments(doc: str, argv: list[str] | None) -> argparse.Namespace:
    """``ROOT`` (default ``results``) and ``--json FILE``, with ``doc``'s first paragraph as the description."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("root", nargs="?", type=Path, default=Path("results"),
                    help="folder searched for summary.json files")
    ap.add_argument("--json", type=Path, help="also write the rows as data")
    return ap.parse_args(argv)


def result_folders(root: Path) -> list[Path]:
    """Every folder under ``root`` with a ``summary.json``, in path order."""
    return [f.parent for f in sorted(root.rglob("summary.json"))]


def print_table(head: list[str], lines: list[str]) -> None:
    """A Markdown table: ``head`` and the ready-made ``| ... |`` lines."""
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for line in lines:
        print(line)


def write_rows(path: Path | None, rows: list[dict]) -> None:
    """The rows as JSON in ``path`` (nothing when None)."""
    if path:
        path.write_text(json.dumps(rows, indent=1) + "\n")


def run_scores(folder: Path) -> Iterator[tuple[str, int, np.ndarray, np.ndarray]]:
    """(arm, seed, labels, scores) of every run whose comparison folder kept its test scores
    (``runs/<arm>/seed<k>/test_scores.npz``)."""
    for path in sorted((folder / "runs").glob("*/seed*/test_scores.npz")):
        z = np.load(path)
        yield path.parent.parent.name, int(path.parent.name.removeprefix("seed")), z["labels"], z["scores"]
