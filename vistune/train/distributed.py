"""Data-parallel training facts from the environment `torchrun` sets (RANK, WORLD_SIZE, ...).

One process per device: gloo on CPU, nccl on CUDA. Every rank reads the same prepared arrays
and takes its own shard of each epoch's permutation (as DistributedSampler: padded so every
rank runs the same number of steps). Only rank 0 writes outputs and checkpoints.

`train.batch_size` is per rank, so N ranks train on a global batch of N x batch_size; with
`train.lr_scaling: linear` (default) the LR (and min_lr) is multiplied by N (Goyal et al. 2017,
with the usual warmup), `sqrt` by sqrt(N), `none` keeps `train.lr`. `train.sync_bn: true` converts
BatchNorm to SyncBatchNorm (CUDA/nccl only) for small per-rank batches.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_env() -> DistInfo:
    return DistInfo(
        int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))
    )


def init(device_spec: str) -> tuple[DistInfo, str]:
    """Join the process group when launched by torchrun; returns the info and this rank's device."""
    info = from_env()
    if not info.enabled:
        return info, device_spec
    use_cuda = device_spec != "cpu" and torch.cuda.is_available()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    if use_cuda:
        torch.cuda.set_device(info.local_rank)
        return info, f"cuda:{info.local_rank}"
    return info, "cpu"


def shard(order: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """This rank's slice of a permutation, padded by wrapping so all ranks get equal length."""
    if not info.enabled:
        return order
    per = -(-len(order) // info.world_size)
    total = per * info.world_size
    if total > len(order):
        order = torch.cat([order, order[: total - len(order)]])
    return order[info.rank : total : info.world_size]


def all_sum(values: list[float], info: DistInfo, device: torch.device) -> list[float]:
    if not info.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def broadcast(values: list[float], info: DistInfo, device: torch.device) -> list[float]:
    """Rank 0's values on every rank (so early stopping decisions agree)."""
    if not info.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.broadcast(t, src=0)
    return t.tolist()


def sync_buffers(module: torch.nn.Module, info: DistInfo) -> None:
    """Rank 0's buffers (BatchNorm running statistics) on every rank.

    DDP averages gradients, so parameters agree; each rank's BatchNorm still updates its running
    statistics from its own shard after DDP's per-forward broadcast. Once per epoch this makes every
    rank hold the same full state (checkpoint, validation and best weights agree).
    """
    if info.enabled:
        for b in module.buffers():
            dist.broadcast(b.data, src=0)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
