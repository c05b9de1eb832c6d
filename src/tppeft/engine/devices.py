"""Device, threads, precision and compilation."""

from __future__ import annotations

import contextlib
import os
import platform
from pathlib import Path

import torch
from torch import nn

from tppeft import distributed, ranks


def resolve_device(name: str) -> torch.device:
    """The device of ``device: auto|cpu|cuda``; under torchrun each process gets its own GPU."""
    if name == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    elif name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device=cuda but no CUDA device is visible; use device=cpu or device=auto")
    else:
        device = torch.device(name)
    return distributed.setup(device)


def arithmetic(device: torch.device) -> dict[str, str]:
    """What decides the float arithmetic of a run beyond its config: the processor (CPU kernels differ by
    instruction set, e.g. AVX2 or AVX512) or the GPU, and the torch build. Two runs agree bit for bit only where
    these agree."""
    out = {"torch": torch.__version__, "cpu": _processor(), "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    if device.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(device)
        out["cuda"] = str(torch.version.cuda)
    return out


def _processor() -> str:
    """The processor's model name (Linux's /proc/cpuinfo, else what the platform module says)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or platform.machine() or "unknown"


def set_threads(threads: int | None) -> int:
    """Use every core (or ``threads``) for intra-op parallelism; returns the count in use.

    Processes started together on one machine (torchrun) split the cores between them.
    """
    n = threads or max(1, ranks.cores() // max(1, distributed.local_world_size()))
    torch.set_num_threads(n)
    return n


def set_deterministic(on: bool) -> None:
    """Deterministic kernels (``torch.use_deterministic_algorithms``); cuBLAS needs its workspace setting."""
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(on)


def autocast_dtype(precision: str, device: torch.device, bf16_supported: bool | None = None) -> torch.dtype | None:
    """The autocast dtype of forward passes for ``train.precision``, or None for float32.

    ``auto``: bfloat16 on a CUDA device that supports it (``bf16_supported``, asked of torch when None), float32
    elsewhere: on CPU bf16 matrix products are much slower than float32 unless the processor has AMX/AVX512-BF16.
    """
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type != "cuda":
        return None
    supported = torch.cuda.is_bf16_supported() if bf16_supported is None else bf16_supported
    return torch.bfloat16 if supported else None


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to ``dtype`` on ``device``'s type, or nothing for float32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def compile_blocks(module: nn.Module, backend: str = "inductor") -> int:
    """``torch.compile`` every timm transformer block inside ``module`` in place; returns how many.

    Compiling block by block (PyTorch's "regional compilation") rather than whole models: the blocks of a
    model are alike, so one compilation serves them all, the code around them (masking, prompts, heads) stays
    eager, and parameter names and ``state_dict`` keys do not change (``nn.Module.compile`` works in place).
    """
    from timm.models.vision_transformer import Block

    count = 0
    for sub in module.modules():
        if isinstance(sub, Block):
            if getattr(sub, "_compiled_call_impl", None) is None:
                sub.compile(backend=backend)
            count += 1
    return count
