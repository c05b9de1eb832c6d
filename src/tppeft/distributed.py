"""Several processes under ``torchrun``: the process group, each process's share of a batch, reductions.

torch's ``DistributedDataParallel`` averages the gradients; this module adds what the tool needs around it.
Every process draws the same global batch from the same generators and keeps a contiguous share of its
rows, and every per-image random draw inside a step (crops, flips, masks) is made for the whole global batch
and cut to the share (:func:`per_item`), so a run on N processes sees exactly the data, augmentation and
masks of a 1-process run with the same global batch. Process 0 alone writes files and prints.

With one process (no ``WORLD_SIZE`` > 1 in the environment) every function here is a no-op or an identity.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.distributed as dist

from tppeft.ranks import _env_int, is_main, local_rank, local_world_size, rank, world_size  # noqa: F401

# (start, stop, total) of this process's rows of the batch the current training step works on.
_share: tuple[int, int, int] | None = None
_device: torch.device = torch.device("cpu")  # where collectives put their tensors (CUDA for NCCL)


def setup(device: torch.device) -> torch.device:
    """Join the process group when torchrun started several processes (NCCL on CUDA, gloo on CPU);
    returns the device of this process (``cuda:LOCAL_RANK`` on CUDA)."""
    global _device
    if _env_int("WORLD_SIZE", 1) <= 1:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", local_rank())
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, device_id=device if device.type == "cuda" else None)
    _device = device
    return device


def shutdown() -> None:
    """Leave the process group (at the end of a command)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def all_sum(t: torch.Tensor) -> torch.Tensor:
    """The sum of ``t`` over all processes (a new tensor; ``t`` itself with one process)."""
    if world_size() == 1:
        return t
    out = t.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def all_values(t: torch.Tensor) -> torch.Tensor:
    """Every process's value of the scalar ``t``, in process order (``t`` as a 1-element tensor with one process)."""
    if world_size() == 1:
        return t.detach().reshape(1)
    parts = [torch.empty_like(t.detach().reshape(())) for _ in range(world_size())]
    dist.all_gather(parts, t.detach().reshape(()).contiguous())
    return torch.stack(parts)


def any_process(flag: bool | torch.Tensor) -> bool:
    """True when ``flag`` is true on any process (one small collective; the value itself with one process)."""
    if world_size() == 1:
        return bool(flag)
    t = torch.as_tensor(flag, device=_device).to(torch.int32).reshape(())
    if t.device != _device:
        t = t.to(_device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t)


def share_bounds(total: int) -> tuple[int, int]:
    """This process's contiguous rows [start, stop) of ``total`` (shares differ by at most one row)."""
    w, r = world_size(), rank()
    base, extra = divmod(total, w)
    start = r * base + min(r, extra)
    return start, start + base + (1 if r < extra else 0)


def eval_share(total: int) -> tuple[int, int]:
    """Rows [start, stop) of ``total`` evaluation items that this process predicts: its share, or all of
    them when there are fewer items than processes (then every process predicts everything)."""
    return share_bounds(total) if total >= world_size() else (0, total)


def eval_sum(t: torch.Tensor, total: int) -> torch.Tensor:
    """The sum over processes of ``t``, each process's part from its :func:`eval_share` of ``total`` items
    (``t`` itself with one process, or when every process holds all the rows)."""
    return t if total < world_size() else all_sum(t)


def gather_rows(t: torch.Tensor, total: int) -> torch.Tensor:
    """Every process's rows from :func:`eval_share` of ``total`` items, joined in order (``t`` itself with
    one process, or when every process holds all the rows)."""
    w = world_size()
    if w == 1 or total < w:
        return t
    longest = -(-total // w)
    padded = t.new_zeros((longest, *t.shape[1:]))
    padded[: len(t)] = t
    parts = [torch.empty_like(padded) for _ in range(w)]
    dist.all_gather(parts, padded)
    sizes = [total // w + (1 if r < total % w else 0) for r in range(w)]
    return torch.cat([p[:n] for p, n in zip(parts, sizes, strict=True)])


@contextmanager
def batch_share(start: int, stop: int, total: int) -> Iterator[None]:
    """Within this block, per-image random draws of a batch of ``stop - start`` items are made for the
    whole batch of ``total`` and cut to rows [start, stop) (see :func:`per_item`)."""
    global _share
    before, _share = _share, (start, stop, total)
    try:
        yield
    finally:
        _share = before


def share_weight() -> float | None:
    """Inside :func:`batch_share` on several processes: the factor the training loop multiplies this process's
    loss by (its share of the batch times the process count), so that a loss term already reduced over the whole
    batch can divide it out; None elsewhere."""
    if _share is None or world_size() == 1:
        return None
    start, stop, total = _share
    return (stop - start) * world_size() / total


def all_sum_grad(t: torch.Tensor) -> torch.Tensor:
    """The sum of ``t`` over all processes, differentiable: the gradient flows back to every process's ``t``."""
    if world_size() == 1:
        return t
    from torch.distributed.nn.functional import all_reduce

    return all_reduce(t, op=dist.ReduceOp.SUM)


def per_item(n: int, draw: Callable[[int], torch.Tensor]) -> torch.Tensor:
    """``draw(n)``: random values for the ``n`` items of a batch, first dimension ``n``.

    Inside :func:`batch_share`, a batch of this process's share draws the values of the whole global batch
    and keeps its own rows, so every process advances its generators exactly as one process would.
    """
    if _share is None or _share[1] - _share[0] != n:
        return draw(n)
    start, stop, total = _share
    return draw(total)[start:stop]


def wrap_ddp(module: torch.nn.Module) -> torch.nn.Module:
    """``module`` in ``DistributedDataParallel`` when several processes run (itself otherwise).

    ``static_graph``: the set of parameters that get gradients is the same at every step, so DDP finds unused
    ones (e.g. target parameters of blocks after a segmentation decoder's last feature block) once, at the
    first step, instead of searching the graph every step as ``find_unused_parameters`` would. Buffers are
    not broadcast: every process holds the same ones (EMA teachers update identically everywhere).
    """
    if world_size() == 1:
        return module
    from torch.nn.parallel import DistributedDataParallel

    gc.collect()  # the previous stage's wrapper must be gone: its gradient hooks sit on the same parameters
    return DistributedDataParallel(module, broadcast_buffers=False, static_graph=True)
