"""Shared fixtures: small real data from the bundled files, a built backbone, synthetic npz writers."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from tppeft.backbones import build_backbone
from tppeft.bundled import resolve
from tppeft.config import BackboneConfig, load_config

# The shared data folder beside the repository (TPPEFT_SHARED_DATA overrides where it lives elsewhere).
SHARED_DATA = Path(os.environ.get("TPPEFT_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
BREAST = resolve("bundled:breastmnist")


def pytest_configure(config):
    """Under pytest-xdist (``-n N``) each worker process counts as having its share of the cores, so the runs a
    test makes in it (``threads: null`` takes every core the process may use, ``--jobs`` splits them) and torch's
    own default do not oversubscribe the machine. Only the count is shared, not the cores themselves: the
    processes a test starts (torchrun, ``--jobs`` workers, each of one thread) may run on any idle core."""
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not os.environ.get("PYTEST_XDIST_WORKER") or count < 2:
        return
    import torch

    from tppeft import ranks

    share = max(1, ranks.cores() // count)
    ranks.cores = lambda: share
    torch.set_num_threads(share)


@pytest.fixture(scope="session")
def b0():
    return build_backbone(BackboneConfig())


def write_medmnist(path: Path, n=(12, 6, 6), size=28, rgb=False, classes=2, multilabel=0, seed=0) -> Path:
    """A MedMNIST-format file with random pixels and labels covering every class in every split."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, count in zip(("train", "val", "test"), n, strict=True):
        shape = (count, size, size, 3) if rgb else (count, size, size)
        arrays[f"{split}_images"] = rng.integers(0, 256, shape, dtype=np.uint8)
        if multilabel:
            arrays[f"{split}_labels"] = rng.integers(0, 2, (count, multilabel), dtype=np.uint8)
        else:
            arrays[f"{split}_labels"] = (np.arange(count) % classes).astype(np.uint8)[:, None]
    np.savez(path, **arrays)
    return path


def tiny_config(tmp_path: Path | None = None, **overrides):
    """A config that runs the whole pipeline in seconds on the bundled data. The TPP stage's linear probe (a
    diagnostic that reads every split's features twice per run) is off; its own tests turn it on."""
    sets = ["seeds=2", "data.limit=48", "pretext.epochs=1", "finetune.epochs=1", "pretext.batch_size=16",
            "finetune.batch_size=16", "pretext.probe=false"]
    sets += [f"{k}={v}" for k, v in overrides.items()]
    return load_config(None, sets), sets


@pytest.fixture()
def one_thread():
    """Tiny batches gain nothing from intra-op threads, and on a shared machine two threads can wait on each
    other for far longer than the work takes; restores the previous count afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def shared_file(relative: str) -> Path:
    """A file of the shared data folder; the test is skipped (saying so) where that folder is absent."""
    path = SHARED_DATA / relative
    if not path.is_file():
        message = f"shared data file {relative} not found (set TPPEFT_SHARED_DATA to the shared data folder)"
        if os.environ.get("CI", "").lower() == "true":  # in CI a missing folder is a broken set-up, not a skip
            pytest.fail(message)
        pytest.skip(message)
    return path


def write_segmentation_npz(path: Path, n=(6, 3, 3), size=32, rgb=False, classes=2, seed=0) -> Path:
    """A segmentation .npz with random pixels and square masks of every class (plus one empty mask)."""
    rng = np.random.default_rng(seed)
    total = sum(n)
    images = rng.integers(0, 256, (total, size, size, 3) if rgb else (total, size, size), dtype=np.uint8)
    masks = np.zeros((total, size, size), np.uint8)
    for i in range(1, total):
        k = 1 + i % (classes - 1)
        y, x = rng.integers(0, size // 2, 2)
        masks[i, y:y + size // 3, x:x + size // 3] = k
    split = np.repeat([0, 1, 2], n).astype(np.uint8)
    np.savez(path, images=images, masks=masks, split=split)
    return path


def write_image_folder(root: Path, counts=(8, 3, 3), classes=("cat", "dog"), size=16, splits=True, seed=0) -> Path:
    """An image folder DIR/{train,val,test}/<class>/*.png (``splits`` False: DIR/<class>/*) of random grey PNGs
    whose brightness depends on the class, so a model can learn it."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, count in zip(("train", "val", "test"), counts, strict=True):
        for k, name in enumerate(classes):
            folder = root / split / name if splits else root / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = rng.integers(0, 128, (size, size)) + 100 * k
                Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"{split}_{i}.png")
    return root


def wait_for(proc: subprocess.Popen, pattern: str, timeout: float = 300) -> list[str]:
    """Read ``proc``'s stderr until a line holds ``pattern``; the lines read. Fails if it never comes."""
    lines, end = [], time.monotonic() + timeout
    while time.monotonic() < end:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        if pattern in line:
            return lines
    raise AssertionError(f"'{pattern}' never appeared:\n{''.join(lines)}")
