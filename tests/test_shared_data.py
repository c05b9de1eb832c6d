"""The shared data folder: skipped with a reason on a laptop, a failure in CI (a broken set-up, never a skip)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
ONE = "data/test_data_segmentation.py::test_busi_npz_has_its_documented_splits_and_binary_masks"


@pytest.mark.parametrize(("ci", "outcome"), [("", "1 skipped"), ("true", "1 failed")])
def test_missing_shared_data_is_skipped_locally_and_fails_in_ci(tmp_path, ci, outcome):
    env = {**os.environ, "CI": ci, "TPPEFT_SHARED_DATA": str(tmp_path / "absent")}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", str(TESTS / ONE)],
                          env=env, capture_output=True, text=True, cwd=TESTS.parent)
    assert outcome in done.stdout, done.stdout[-2000:]
    assert "shared data file segmentation/busi/busi_256.npz not found" in done.stdout
