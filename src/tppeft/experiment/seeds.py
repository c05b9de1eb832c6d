"""Seed streams: each source of randomness of a run draws from its own stream, the same in every arm."""

from __future__ import annotations

import torch

# Offsets that give each source of randomness of a run its own stream, the same in every arm.
_STREAMS = {"targets": 11, "pretext": 23, "head": 37, "finetune": 41, "pretext_eval": 53, "eva": 59,
            "labels": 61, "head_warmup": 67}


def stream_seed(seed: int, stream: str) -> int:
    """The seed of ``stream`` (``targets``, ``pretext``, ``head``, ...) in run ``seed``."""
    return seed * 1000 + _STREAMS[stream]


def generator(seed: int, stream: str, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator on ``device`` seeded with :func:`stream_seed`."""
    return torch.Generator(device=device).manual_seed(stream_seed(seed, stream))
