"""What a backbone saw in pre-training, as its metadata (``trained_on``) tells. Torch-free: reports use it."""

from __future__ import annotations

from pathlib import Path

from tppeft.io import file_sha256


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
