"""benchmarks/gpu_checks.sh without a usable CUDA device: it says so in one line and exits 2 at once, checking
nothing. Each case is one of the three ways a machine can lack one."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_checks.sh"
pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _run(tmp_path: Path, listed: str | None) -> subprocess.CompletedProcess:
    """The script with ``nvidia-smi -L`` printing ``listed`` (None: no nvidia-smi) and no GPU visible to torch."""
    stubs = tmp_path / "bin"
    stubs.mkdir()
    if listed is not None:
        (stubs / "nvidia-smi").write_text(f"#!/bin/sh\nprintf '{listed}'\n")
        (stubs / "nvidia-smi").chmod(0o755)
    env = {**os.environ, "PATH": f"{stubs}{os.pathsep}{os.environ['PATH']}", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run(["bash", str(SCRIPT), str(tmp_path / "out")], env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("listed,why", [
    (None, "nvidia-smi not found"),
    ("", "nvidia-smi lists no GPU"),
    ("GPU 0: A card torch cannot use (UUID: GPU-0)\\n", "nvidia-smi lists 1 but torch sees none"),
])
def test_without_a_cuda_device_it_says_so_and_exits_2(tmp_path, listed, why):
    if listed is None and shutil.which("nvidia-smi"):
        pytest.skip("this machine has nvidia-smi")
    done = _run(tmp_path, listed)
    assert done.returncode == 2 and done.stdout == "", done
    assert done.stderr.startswith(f"gpu_checks: no CUDA device present ({why}") and done.stderr.count("\n") == 1
    assert done.stderr.rstrip().endswith("nothing was checked") and not (tmp_path / "out").exists()
