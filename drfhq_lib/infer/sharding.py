"""Enhance shared over processes and machines: ``torchrun --nproc_per_node=N -m drfhq_lib
enhance ...`` (several machines: ``--nnodes``, with the output folder on a file system they all
see).

Shares. The inputs, in the order given, are cut into blocks of ``batch`` consecutive inputs;
a block is one projection batch whether one process runs the job or many, so a sharded run
projects the same batches with the same seeds as a one-process run and writes the same files
(on a CPU the last bits of a convolution depend on the batch it runs in, so equal batches are
what make the outputs byte-equal). The blocks that still hold an input without output are dealt
round-robin over the ranks. Every rank deals from its own scan of the output folder, made
before a barrier that no rank passes before all have scanned, so all deal the same, disjoint
shares that cover every pending input; a rerun deals out only what is left, so it is balanced
again.

Bookkeeping. Each rank writes its manifest rows to its own part
(:func:`drfhq_lib.data.manifest.part_path`); at the end, after a barrier, rank 0 merges the
parts into the one manifest. A rerun first merges what an interrupted run left. No collective
runs while items are being processed, so a rank that dies loses only its block in flight
(every output is written atomically); torchrun then stops the job, and rerunning the same
command completes it.

Backend: gloo on CPU, NCCL with one GPU per rank (``cuda:LOCAL_RANK``), through
:func:`drfhq_lib.finetune.distributed.setup`, the fine-tuning's engine.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Sequence

import torch
import torch.distributed as dist

from drfhq_lib.data.manifest import merge_parts, read_manifest
from drfhq_lib.errors import DrfhqError
from drfhq_lib.finetune import distributed
from drfhq_lib.finetune.distributed import Ranks

#: How long a rank that has finished its share waits at the final barrier for the others
#: (torch's default of 30 minutes is less than one block of 1024 px portraits on a CPU).
TIMEOUT = timedelta(days=7)


def join(device: str | torch.device = "auto") -> tuple[Ranks, torch.device]:
    """Join torchrun's process group, when the process runs under torchrun, and pick this
    process's device (a bare ``cuda`` becomes ``cuda:LOCAL_RANK``)."""
    ranks = distributed.ranks_from_env()
    device = distributed.pick_device(device, ranks.local_rank)
    if device.type == "cuda" and device.index >= torch.cuda.device_count():
        raise DrfhqError(f"rank {ranks.rank} (LOCAL_RANK {ranks.local_rank}) has no GPU: this "
                         f"machine has {torch.cuda.device_count()}; run torchrun with "
                         "--nproc_per_node at most the number of GPUs (one GPU per process)")
    return distributed.setup(device, timeout=TIMEOUT)


def current_ranks() -> Ranks:
    """This process's rank and the number of processes of the job (one when not sharded)."""
    if distributed.active():
        return Ranks(dist.get_rank(), dist.get_world_size(),
                     int(os.environ.get("LOCAL_RANK", 0)))
    if int(os.environ.get("WORLD_SIZE", 1)) > 1:
        raise DrfhqError("this process runs under torchrun (WORLD_SIZE "
                         f"{os.environ['WORLD_SIZE']}) but has not joined its process group, so "
                         "every rank would do every input; call "
                         "drfhq_lib.infer.sharding.join(device) first")
    return Ranks()


def blocks(count: int, size: int) -> list[range]:
    """Positions 0..count-1 cut into runs of ``size`` consecutive positions (the last may be
    shorter): the batches of the job."""
    if size < 1:
        raise ValueError(f"block size must be at least 1, not {size}")
    return [range(start, min(start + size, count)) for start in range(0, count, size)]


def deal(pending: Sequence[bool], size: int, ranks: Ranks) -> list[list[int]]:
    """This rank's share: the positions of the pending items, by block, of every ``world``-th
    block that holds a pending item, starting with block ``rank``."""
    todo = [[i for i in block if pending[i]] for block in blocks(len(pending), size)]
    todo = [block for block in todo if block]
    return todo[ranks.rank::ranks.world]


def start(manifest: Path, fields: Sequence[str], key: str, ranks: Ranks) -> dict[str, dict]:
    """Before any rank writes: rank 0 merges the parts an interrupted run left, then all meet
    (so every rank has scanned the output folder before anything in it changes); returns the
    manifest's rows."""
    if ranks.main:
        merge_parts(manifest, fields, key)
    distributed.barrier()
    return read_manifest(manifest, key) if Path(manifest).exists() else {}


def finish(manifest: Path, fields: Sequence[str], key: str, ranks: Ranks) -> dict[str, dict]:
    """After every rank's share: all meet, rank 0 merges the parts into the manifest, all
    meet again (no rank leaves before the manifest is whole); returns its rows."""
    distributed.barrier()
    if ranks.main:
        merge_parts(manifest, fields, key)
    distributed.barrier()
    return read_manifest(manifest, key) if Path(manifest).exists() else {}
