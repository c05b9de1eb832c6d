"""What a backbone saw in pre-training, as its metadata (``trained_on``) tells. Torch-free: reports use it."""

from __future__ import annotations

from pathlib import Path

from tppeft.io import file_sha256


def pool_text(trained_on: list) -> str:
    """A backbone's pre-training sets as words: "pneumoniamnist (4,708 images); brain_mri_train.npz (train 4,117
    images)" (``tppeft backbone-pretrain`` writes file, splits and counts; older metadata [name, images])."""
    parts = []
    for s in trained_on:
        if isinstance(s, dict):
            splits = ", ".join(f"{k} {v:,}" for k, v in s.get("splits", {}).items())
            parts.append(f"{s.get('file', s.get('path'))} ({splits} images)")
        elif isinstance(s, list | tuple) and len(s) == 2:
            parts.append(f"{s[0]} ({s[1]:,} images)")
        else:
            parts.append(str(s))
    return "; ".join(parts)


def keys_text(pool_keys: dict) -> str:
    """The ``pool_keys`` entry of a backbone's metadata as words: how many images, at what size, covering what."""
    note = f": {pool_keys['note']}" if pool_keys.get("note") else ""
    return (f"{pool_keys.get('images', 0):,} images keyed at {pool_keys.get('image_size')} px "
            f"({pool_keys.get('file')}){note}")


def seen_splits(identity: dict, data_file: Path) -> list[str]:
    """Splits of ``data_file`` that the backbone saw in pre-training, by file checksum (from the metadata that
    ``tppeft backbone-pretrain`` writes; older checkpoints that list names only are not matched)."""
    sources = [s for s in identity.get("trained_on") or [] if isinstance(s, dict) and s.get("sha256")]
    if not sources or not Path(data_file).is_file():
        return []
    digest = file_sha256(Path(data_file))
    return sorted({split for s in sources if s["sha256"] == digest for split in s.get("splits", {})})


_SPLIT_WORDS = ("train", "val", "test", "central", "slices")


def set_stem(name: str) -> str:
    """A data set's name without its file type and split or size suffixes: ``brain_mri_train.npz`` and
    ``brain_mri_64`` are both ``brain_mri``; ``adrenalmnist3d_train_central_slices`` is ``adrenalmnist3d``."""
    parts = Path(str(name)).name.split(".")[0].lower().split("_")
    keep = []
    for part in parts:
        if part in _SPLIT_WORDS or part.isdigit():
            break
        keep.append(part)
    return "_".join(keep) or parts[0]


def seen_by_name(identity: dict, dataset: str) -> list[str]:
    """Names among the backbone's pre-training sets that are, by name, the data set ``dataset`` (a guess where
    checksums cannot decide: older metadata lists names only, and a pool file may hold one split of a set)."""
    names = [str(s.get("file") or s.get("path")) if isinstance(s, dict) else str(s[0])
             for s in identity.get("trained_on") or [] if isinstance(s, dict | list | tuple)]
    return [n for n in names if set_stem(n) == set_stem(dataset)]
