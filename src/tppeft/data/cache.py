"""``data.cache``: images decoded once into a uint8 ``.npy`` file and read memory-mapped afterwards, so that a
folder larger than memory is never held in it whole; and the check of whether decoded images fit."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from tppeft.data.images import Plan
from tppeft.data.medmnist import DataError

FORMAT = 1  # bump when the decoding changes what a cache file holds
MEMORY_SHARE = 0.5  # `auto` caches when the decoded images would need more than this share of the free memory


def cache_root(cache_dir: str | None) -> Path:
    """``data.cache_dir``, or the user's cache folder."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "tppeft"


def available_memory() -> int | None:
    """Bytes of memory free for new allocations (Linux ``MemAvailable``), or None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def should_cache(setting: bool | str, nbytes: int) -> bool:
    """Whether to cache: as set, or for ``auto`` when ``nbytes`` would not fit in the free memory's share."""
    if setting != "auto":
        return bool(setting)
    free = available_memory()
    return free is not None and nbytes > MEMORY_SHARE * free


def cache_key(files: Sequence[Path], target: Plan) -> str:
    """Changes with any file (path, size, modification time) and with the stored shape."""
    h = hashlib.sha256(f"{FORMAT} {target.channels} {target.height} {target.width}".encode())
    for f in files:
        st = f.stat()
        h.update(f"\n{f.resolve()} {st.st_size} {st.st_mtime_ns}".encode())
    return h.hexdigest()[:20]


def cached_images(files: Sequence[Path], target: Plan, root: Path, name: str,
                  fill: Callable[[np.ndarray], None], log: Callable[[str], None]) -> np.ndarray:
    """(N, C, H, W) uint8 images of ``files`` from their cache file in ``root``, written first by ``fill`` (into a
    memory map) when there is none. The file appears only once complete; a failed fill leaves nothing."""
    path = root / f"{name}-{cache_key(files, target)}.npy"
    shape = (len(files), target.channels, target.height, target.width)
    if not path.is_file():
        root.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
        try:
            out = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8, shape=shape)
            fill(out)
            out.flush()
            del out
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
        log(f"data: {len(files)} images decoded once into the cache {path}")
    else:
        log(f"data: images read from the cache {path}")
    images = np.load(path, mmap_mode="c")  # copy-on-write: the file is never changed
    if images.shape != shape or images.dtype != np.uint8:
        raise DataError(f"{path}: cache file of shape {images.shape}, expected {shape}; delete it")
    return images
