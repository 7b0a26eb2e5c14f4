"""The process group of a `torchrun` launch, and the few collectives the trainer needs besides DDP's.

torchrun (or any launcher that sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT) starts
one process per device; without those variables this is a single process and every helper here is
the identity. CUDA ranks use NCCL on device LOCAL_RANK, CPU ranks gloo.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist

from charm_core.inference import resolve_device

# Rank 0 alone validates and writes checkpoints while the others wait in their next collective; a
# full DELIVER validation (15 subsets, 1024 px) can take longer than the 10 min NCCL default.
COLLECTIVE_TIMEOUT = timedelta(hours=2)


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup(device: str) -> tuple[Ranks, torch.device]:
    """Join the launcher's process group (if any) and pick this rank's device."""
    ranks = Ranks(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")),
                  int(os.environ.get("LOCAL_RANK", "0")))
    dev = resolve_device(device)
    if ranks.world == 1:
        return ranks, dev
    if dev.type == "cuda":
        dev = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", timeout=COLLECTIVE_TIMEOUT)
    return ranks, dev


def shutdown(ranks: Ranks) -> None:
    """Wait for every rank (rank 0's last checkpoint and plot included), then leave the group."""
    if ranks.world > 1 and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def from_rank0(value: int, ranks: Ranks, device: torch.device) -> int:
    """Rank 0's `value` on every rank (decisions only rank 0 can make: its clock, its draw)."""
    if ranks.world == 1:
        return value
    t = torch.tensor([value], dtype=torch.int64, device=device)
    dist.broadcast(t, src=0)
    return int(t.item())


def mean_over_ranks(t: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """The mean of a tensor over ranks (the same bits on every rank), in place."""
    if ranks.world > 1:
        dist.all_reduce(t)
        t /= ranks.world
    return t


STREAMS = ("torch", "subsets", "ine")  # torch: the global RNG (drop-path, dropout masks)


def step_seed(seed: int, step: int, stream: str, rank: int | None = None) -> int:
    """Seed of one random stream of one step, on one rank (or shared by all ranks with rank=None).

    Step randomness drawn from (seed, step, stream, rank) instead of running generators makes a
    resumed run draw what the uninterrupted one would have, for any number of ranks, with no RNG
    state to save per rank; streams are independent of each other."""
    words = [seed, step, STREAMS.index(stream)] + ([] if rank is None else [rank + 1])
    return int(np.random.SeedSequence(words).generate_state(1, np.uint64)[0] >> np.uint64(1))
