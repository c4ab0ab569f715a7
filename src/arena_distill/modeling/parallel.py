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
from datetime import timedelta

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)

GROUP_TIMEOUT = timedelta(hours=2)
"""How long a collective may wait for the slowest rank. NCCL's default (10 minutes) is
shorter than loading a 70B model or saving its outputs; a hang still ends, after this."""


@dataclass(frozen=True)
class Parallel:
    """This process's place in a `torchrun` job (rank 0 of 1 without one)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> "Parallel":
        """The job's process group, started once: NCCL for CUDA tensors with gloo beside it
        for CPU ones, the device bound first so NCCL's communicator lands on it."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        parallel = cls(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))
        if world > 1 and not dist.is_initialized():
            parallel.device()
            backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
            dist.init_process_group(backend, timeout=GROUP_TIMEOUT)
        return parallel

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self) -> torch.device:
        if torch.cuda.is_available():
            torch.cuda.set_device(self.local_rank)
            return torch.device("cuda", self.local_rank)
        return torch.device("cpu")

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """`values` summed over processes, on this process's device: the one device type
        every backend of the group serves (NCCL refuses CPU tensors)."""
        if self.world == 1:
            return values
        on_device = values.to(self.device())
        dist.all_reduce(on_device, op=dist.ReduceOp.SUM)
        return on_device

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def close_process_group() -> None:
    """End the job's process group (torchrun workers call it on the way out)."""
    if dist.is_initialized():
        dist.destroy_process_group()


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
