"""Where a training process runs: its device, its rank in a `torchrun` job, and the collectives.

Gradients are summed across processes by hand, with one `all_reduce` of a flat buffer after
the process's micro-batches, not by DistributedDataParallel. Each process takes every
`world`-th row of a global batch, so processes may run different numbers of micro-batches
(and one may have no rows at all); DDP needs every rank to run the same forward/backward
calls, while one sum after accumulation is exact whatever the split, and a process with
no rows simply adds zeros.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Parallel:
    """This process's place in a `torchrun` job (rank 0 of 1 without one)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> "Parallel":
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        return cls(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self) -> torch.device:
        if torch.cuda.is_available():
            torch.cuda.set_device(self.local_rank)
            return torch.device("cuda", self.local_rank)
        return torch.device("cpu")

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            dist.all_reduce(values, op=dist.ReduceOp.SUM)
        return values

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def use_bf16(precision: str, device: torch.device) -> bool:
    """bf16 autocast where it is native (CUDA with bf16 support); fp32 elsewhere."""
    if precision == "fp32":
        return False
    supported = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if precision == "bf16" and not supported:
        log.warning("precision bf16 requested but %s has no native bf16: training in fp32", device)
    return supported


def sync_gradients(params: list[torch.nn.Parameter], parallel: Parallel) -> None:
    """Sum gradients over processes in one flat buffer (a process with no rows adds zeros)."""
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = parallel.sum(torch.cat([g.reshape(-1) for g in grads]))
    offset = 0
    for p, g in zip(params, grads):
        p.grad = flat[offset : offset + g.numel()].view_as(g).clone()
        offset += g.numel()
