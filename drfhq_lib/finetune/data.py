"""Training images: x-flip amplification, resolution check, stateless sampling.

Images are read by :func:`drfhq_lib.data.dataset.open_dataset` (a dataset zip or folder). With
``xflip`` the dataset is doubled as StyleGAN2-ADA's ``--mirror=1`` does: index ``i + n`` is image
``i`` mirrored left-right.

Sampling is a pure function of (seed, position in the stream): the stream of samples is a
sequence of epochs, epoch ``e`` being a permutation of the (doubled) dataset drawn from
``(seed, e)``. Step ``s`` of a run with total batch ``B`` takes stream positions
``s*B .. s*B + B - 1``; rank ``r`` of ``W`` takes its contiguous share of them. A resumed run
therefore reads exactly the images an uninterrupted one would, whatever was prefetched when it
stopped, and the global batch does not depend on the number of ranks.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from drfhq_lib.data.dataset import open_dataset
from drfhq_lib.errors import DrfhqError


class DatasetResolutionError(DrfhqError):
    """The dataset's images are not the size the generator makes."""


class MirroredDataset:
    """A dataset of ``[3, R, R]`` images in [-1, 1], doubled with x-flips when ``xflip``."""

    def __init__(self, path: str | Path, xflip: bool = True):
        self.path = Path(path)
        self.images = open_dataset(self.path)
        self.xflip = bool(xflip)
        self.resolution = self.images.resolution

    @property
    def raw_count(self) -> int:
        return len(self.images)

    def __len__(self) -> int:
        return self.raw_count * (2 if self.xflip else 1)

    def __getitem__(self, index: int) -> torch.Tensor:
        raw, flipped = index % self.raw_count, index >= self.raw_count
        image = self.images[raw]
        return image.flip(-1) if flipped else image

    def check_resolution(self, resolution: int, network: str = "the generator") -> None:
        if self.resolution != resolution:
            first = self.images.names[0]
            raise DatasetResolutionError(
                f"{self.path} ({first} and the rest) is {self.resolution}x{self.resolution} "
                f"but {network} makes {resolution}x{resolution} images; pack the dataset at "
                f"{resolution} px (`drfhq dataset pack ... --resolution {resolution}`) or "
                f"fine-tune a {self.resolution} px generator")


# ----------------------------------------------------------------------------- sampling

@lru_cache(maxsize=4)
def _epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)


def stream_indices(seed: int, start: int, count: int, n: int) -> list[int]:
    """Dataset indices at positions ``start .. start + count - 1`` of the sample stream."""
    out = []
    for position in range(start, start + count):
        epoch, i = divmod(position, n)
        out.append(int(_epoch_permutation(seed, epoch, n)[i]))
    return out


def step_indices(seed: int, step: int, batch: int, rank: int, world: int, n: int) -> list[int]:
    """The dataset indices rank ``rank`` trains on at ``step`` (its share of the global batch)."""
    per_rank = batch // world
    return stream_indices(seed, step * batch + rank * per_rank, per_rank, n)


class BatchLoader:
    """Real images of each step, ``[B_rank, 3, R, R]`` in [-1, 1], prefetched in threads.

    ``get(step)`` returns that step's batch and starts loading the next ``workers`` ones; any
    step can be asked for (resume) and the result never depends on what was prefetched.
    """

    def __init__(self, dataset: MirroredDataset, seed: int, batch: int, rank: int = 0,
                 world: int = 1, workers: int = 1):
        self.dataset, self.seed, self.batch = dataset, seed, batch
        self.rank, self.world, self.workers = rank, world, workers
        self._pool = ThreadPoolExecutor(workers, "drfhq-data") if workers > 0 else None
        self._pending: dict[int, Future] = {}

    def indices(self, step: int) -> list[int]:
        return step_indices(self.seed, step, self.batch, self.rank, self.world, len(self.dataset))

    def _load(self, step: int) -> torch.Tensor:
        return torch.stack([self.dataset[i] for i in self.indices(step)])

    def get(self, step: int) -> torch.Tensor:
        if self._pool is None:
            return self._load(step)
        future = self._pending.pop(step, None) or self._pool.submit(self._load, step)
        for stale in [s for s in self._pending if s < step or s > step + self.workers]:
            self._pending.pop(stale).cancel()
        for ahead in range(step + 1, step + 1 + self.workers):
            if ahead not in self._pending:
                self._pending[ahead] = self._pool.submit(self._load, ahead)
        return future.result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
            self._pending.clear()
