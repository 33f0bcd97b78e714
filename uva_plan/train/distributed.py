"""DDP under torchrun: this process's place in the run, the process group, and the pieces that
make a run's result independent of how many ranks share it (the global batch of each step,
RNG seeding per step and rank, gradients averaged by DistributedDataParallel)."""

from __future__ import annotations

import datetime
import functools
import os
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class Dist:
    """This process's place in a DDP run (rank 0 of 1 without one)."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def any(self, flag: bool) -> bool:
        if self.world == 1:
            return flag
        t = torch.tensor([float(flag)])
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return bool(t.item())

    def merge(self, sums: dict[str, tuple[float, float]]) -> dict[str, float]:
        """Weighted means of {key: (sum, count)} over all ranks; keys that some rank lacks
        (a metric that only some task modes produce) are averaged where present."""
        if self.world > 1:
            gathered = [None] * self.world
            torch.distributed.all_gather_object(gathered, sums)
        else:
            gathered = [sums]
        total: dict[str, list[float]] = {}
        for part in gathered:
            for key, (s, n) in part.items():
                acc = total.setdefault(key, [0.0, 0.0])
                acc[0], acc[1] = acc[0] + s, acc[1] + n
        return {key: s / n for key, (s, n) in total.items() if n > 0}

    def broadcast(self, obj: Any) -> Any:
        if self.world == 1:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]


def init_distributed(device: str) -> tuple[Dist, torch.device]:
    """Join the torchrun process group (gloo on CPU, nccl on GPU) if WORLD_SIZE > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist(), torch.device(device)
    dev = torch.device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)
    # Long timeout: rank 0 may build the latent cache while the others wait at a barrier.
    torch.distributed.init_process_group("nccl" if dev.type == "cuda" else "gloo",
                                         timeout=datetime.timedelta(hours=3))
    return Dist(torch.distributed.get_rank(), torch.distributed.get_world_size()), dev


class _ComputeLoss(nn.Module):
    """DDP synchronises the gradients of what runs through its forward: route compute_loss there."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: dict):
        return self.model.compute_loss(batch)


def distributed_loss(model: nn.Module, dist: Dist, device: torch.device, find_unused_parameters: bool):
    """``model.compute_loss``, wrapped in DistributedDataParallel when there are several ranks."""
    if dist.world == 1:
        return model.compute_loss
    return nn.parallel.DistributedDataParallel(
        _ComputeLoss(model), device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=find_unused_parameters)


@functools.lru_cache(maxsize=4)
def _permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)


def batch_indices(n: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """Global batch of ``step``: positions [step B, (step + 1) B) of an endless sequence of
    permutations of range(n), the e-th seeded by (seed, e). Each sample once per epoch, and
    a function of (seed, step) alone, which is what makes resuming exact."""
    if n < 1:
        raise ValueError("the training set is empty")
    out, pos, end = [], step * batch_size, (step + 1) * batch_size
    while pos < end:
        epoch, offset = divmod(pos, n)
        take = min(end - pos, n - offset)
        out.append(_permutation(n, seed, epoch)[offset:offset + take])
        pos += take
    return np.concatenate(out)


def seed_step(seed: int, step: int, rank: int) -> None:
    """Reseed the global RNGs (model noise, masks, task modes) from (seed, step, rank)."""
    state = int(np.random.SeedSequence([seed, step, rank]).generate_state(1)[0])
    torch.manual_seed(state)
    np.random.seed(state)
    random.seed(state)
