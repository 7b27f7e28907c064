"""Data-parallel plumbing: rank, world size and the few collectives the harness needs.

A data-parallel job (Ray Train, bench/executors/ray_train.py) runs the same phases in every worker
process with a torch.distributed process group; a single-process job has none. Every helper here
works in both cases (world size 1, rank 0, collectives that return their input), so callers need no
branches for the common case. Light at import time: torch is imported inside the functions.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")


def active() -> bool:
    """Whether this process is one rank of a process group with more than one member."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if active() else 1


def rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if active() else 0


def is_main() -> bool:
    """Rank 0: the one process that writes files and scores."""
    return rank() == 0


def barrier() -> None:
    if active():
        import torch.distributed as dist

        dist.barrier()


def broadcast(obj: T) -> T:
    """Rank 0's `obj` on every rank (decisions from shared files are taken once, by rank 0)."""
    if not active():
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather(obj: T) -> list[T]:
    """Every rank's `obj`, in rank order, on every rank."""
    if not active():
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def all_reduce_sum(tensor):
    """Sum `tensor` over the ranks, in place; returns it."""
    if active():
        import torch.distributed as dist

        dist.all_reduce(tensor)
    return tensor


def broadcast_module(module, buffers_only: bool = False) -> None:
    """Copy rank 0's parameters (and buffers) to every rank, as DistributedDataParallel does at start."""
    if not active():
        return
    import torch
    import torch.distributed as dist

    tensors = list(module.buffers()) if buffers_only else [*module.parameters(), *module.buffers()]
    with torch.no_grad():
        for tensor in tensors:
            dist.broadcast(tensor.data, src=0)


@contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (it may generate data, download or cache), then the other ranks.

    If rank 0's block raises, the others stay at the barrier until Ray Train tears the group down.
    """
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()
