"""Data-parallel training through torchrun: the same script runs on 1 process or N.

`torchrun --nproc_per_node=N stages/train.py` sets WORLD_SIZE/RANK/LOCAL_RANK; we then join a
process group (nccl on GPUs, gloo on CPUs), shard each epoch's batches by rank, and let rank 0
alone write files. Without torchrun every helper here is a no-op.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def setup() -> None:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        use_cuda = torch.cuda.is_available()
        if use_cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if use_cuda else "gloo")


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def world() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0")) if dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def main_first(fn):
    """Run fn on each machine's local rank 0 first (it fills that machine's disk cache), then on
    the other ranks (they read it)."""
    if local_rank() == 0:
        out = fn()
        barrier()
    else:
        barrier()
        out = fn()
    return out


def gather(obj) -> list:
    """Every rank's obj, in rank order, on every rank."""
    if not dist.is_initialized():
        return [obj]
    out = [None] * world()
    dist.all_gather_object(out, obj)
    return out


def shard(indices: torch.Tensor, even: bool) -> torch.Tensor:
    """This rank's share of indices; `even` drops the tail so every rank takes the same steps."""
    n = world()
    if n == 1:
        return indices
    if even:
        indices = indices[: len(indices) - len(indices) % n]
    return indices[rank()::n]
