"""Seed -> latent z: the one convention of the package, the official StyleGAN2-ADA one.

``generate.py`` of stylegan2-ada-pytorch draws seed ``s`` as
``np.random.RandomState(s).randn(1, z_dim)``, so a seed here shows the same face as the
official scripts (and as every figure, app and summary of this package: they all call
:func:`z_from_seeds`). Rows of a figure with ``count`` latents from ``seed`` are the seeds
``seed, seed + 1, ..., seed + count - 1`` (:func:`seed_range`).
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import torch


def seed_range(seed: int, count: int) -> list[int]:
    """The seeds of ``count`` consecutive latents starting at ``seed``."""
    return list(range(int(seed), int(seed) + int(count)))


def z_from_seeds(seeds: Iterable[int], z_dim: int,
                 device: torch.device | str = "cpu") -> torch.Tensor:
    """``[N, z_dim]`` float32: row i is ``RandomState(seeds[i]).randn(1, z_dim)``."""
    seeds = [int(s) for s in seeds]
    bad = [s for s in seeds if not 0 <= s < 2 ** 32]
    if bad:
        raise ValueError(f"seeds must be in [0, 2**32) (numpy RandomState); got {bad[:3]}")
    if not seeds:
        return torch.zeros(0, z_dim, device=device)
    z = np.concatenate([np.random.RandomState(s).randn(1, z_dim) for s in seeds])
    return torch.from_numpy(z).to(device, torch.float32)
