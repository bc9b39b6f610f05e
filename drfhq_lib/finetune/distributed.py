"""torch.distributed plumbing for ``torchrun --nproc_per_node=N``: process group, device,
gradient averaging, and the few collectives the training loop needs.

Every collective here is a no-op in a single process, so the training loop has one code path.
Backend: NCCL on CUDA, gloo on CPU. The rendezvous is torchrun's ``env://`` (``MASTER_ADDR``,
``MASTER_PORT``, ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Iterable

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def ranks_from_env() -> Ranks:
    return Ranks(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                 int(os.environ.get("LOCAL_RANK", 0)))


def pick_device(device: str | torch.device, local_rank: int = 0) -> torch.device:
    """'auto' -> CUDA when available, else CPU; a bare 'cuda' becomes this process's GPU."""
    if str(device) == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    return device


def setup(device: str | torch.device = "auto", timeout: timedelta | None = None
          ) -> tuple[Ranks, torch.device]:
    """Join torchrun's process group (when there is one) and choose this process's device.

    ``timeout``: how long a collective may wait for the slowest process (torch's default,
    30 min for gloo, when None); a job whose processes meet only at the end needs longer."""
    ranks = ranks_from_env()
    device = pick_device(device, ranks.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if ranks.world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                rank=ranks.rank, world_size=ranks.world,
                                device_id=device if device.type == "cuda" else None,
                                **({"timeout": timeout} if timeout is not None else {}))
    return ranks, device


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def average_gradients(params: Iterable[torch.nn.Parameter]) -> None:
    """Replace each gradient by its mean over the processes (one all-reduce of a flat buffer).

    A parameter without a gradient counts as a zero gradient, so every process sends the same
    buffer layout.
    """
    if not active():
        return
    params = list(params)
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    for p, piece in zip(params, flat.split([g.numel() for g in grads])):
        p.grad = piece.view_as(p).clone()


def all_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over processes, in place; returns the tensor."""
    if active():
        dist.all_reduce(tensor)
    return tensor


def all_mean(tensor: torch.Tensor) -> torch.Tensor:
    if active():
        dist.all_reduce(tensor)
        tensor /= dist.get_world_size()
    return tensor


def broadcast_module(module: torch.nn.Module) -> None:
    """Make every process's copy of ``module`` equal to rank 0's (parameters and buffers)."""
    if active():
        for tensor in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(tensor.data, src=0)


def barrier() -> None:
    if active():
        dist.barrier()
