"""Projection started from an encoder's W+ instead of w_avg.

Encoders invert in one forward pass but reconstruct worse than the optimiser; starting the
optimiser (:func:`drfhq_lib.infer.projection.project`, ``init_ws``) from an encoder's guess
gets its quality in a fraction of its steps (benchmarks/bench_encoder_init.py measures how
many on the mini world). The encoder must be one trained for the generator that is projected
into (``drfhq encoder train --generator NET``); the mini world's G_rendering has one committed
beside it (``encoder-miniworld-R64``), which ``drfhq enhance``/``drfhq demo`` use by default
with the mini world's networks.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import torch

from drfhq_lib.errors import DrfhqError
from drfhq_lib.files import sha256_file
from drfhq_lib.infer.projection import ProjectionParams
from drfhq_lib.nets import weights
from drfhq_lib.nets.encoders import TrainedEncoder, load_trained_encoder
from drfhq_lib.nets.weights import Resolved

MINIWORLD_ENCODER = "encoder-miniworld-R64"  # registry name of the committed encoder
INITS = ("w_avg", "encoder")
TRAIN_HINT = "train one with `drfhq encoder train --generator NET --out DIR`"


def miniworld_encoder() -> Resolved | None:
    """The committed mini-world encoder (verified against its registry sha256), None if the
    file is not there."""
    net = weights.get(MINIWORLD_ENCODER)
    return weights.resolve(MINIWORLD_ENCODER, "official") if net.find() else None


def encoder_record(path: str | Path, digest: str | None = None) -> Resolved:
    """An encoder file as a network of a run's provenance (its registry name when it is the
    committed one); ``digest``: its sha256 when already known."""
    path = Path(path)
    digest = digest or sha256_file(path)
    committed = weights.get(MINIWORLD_ENCODER)
    name = MINIWORLD_ENCODER if digest == committed.sha256 else f"encoder:{path.name}"
    return Resolved(name, "official", name, path, digest)


def compatibility_notes(encoder: TrainedEncoder, G, generator_sha256: str | None = None
                        ) -> list[str]:
    """Why ``encoder`` cannot start projections into ``G`` (DrfhqError: another W+ shape), or
    notes on a weaker match (a generator other than the one it was trained for)."""
    shape = (G.num_ws, G.w_dim)
    if tuple(encoder.latent_avg.shape) != shape:
        raise DrfhqError(f"{encoder.path}: the encoder gives W+ of "
                         f"{tuple(encoder.latent_avg.shape)} (trained for "
                         f"{encoder.generator.get('label', '?')}), G_rendering takes {shape}; "
                         f"{TRAIN_HINT} for this G_rendering")
    trained_for = encoder.generator.get("sha256")
    if generator_sha256 and trained_for and generator_sha256 != trained_for:
        return [f"{encoder.path}: trained for {encoder.generator.get('label')} (sha256 "
                f"{trained_for[:12]}), not this G_rendering ({generator_sha256[:12]}): the "
                f"projection starts from its guess all the same; {TRAIN_HINT} for the best start"]
    return []


def load_encoder_init(path: str | Path, G, device: torch.device | str = "cpu",
                      generator_sha256: str | None = None
                      ) -> tuple[Callable[[torch.Tensor], torch.Tensor], list[str]]:
    """(``targets -> W+``, notes) for ``project_to_files(init=...)`` from an encoder file;
    the function carries the file's ``sha256`` (enhance's settings record it)."""
    encoder = load_trained_encoder(path, device)
    notes = compatibility_notes(encoder, G, generator_sha256)

    def init(targets: torch.Tensor) -> torch.Tensor:
        return encoder.ws(targets)
    init.sha256 = sha256_file(path)
    return init, notes


def from_a_guess(params: ProjectionParams) -> ProjectionParams:
    """``params`` for a projection started from an encoder: no latent noise. The projector's
    noise explores around w_avg; from a guess it only costs (mini world, 10 held-out ids,
    100 steps: final LPIPS 0.0138 without it, 0.031 with it; benchmarks/bench_encoder_init.py)."""
    return dataclasses.replace(params, initial_noise_factor=0.0)


def projection_start(start: str, G, params: ProjectionParams, device="cpu",
                     encoder: str | Path | None = None
                     ) -> tuple[Callable | None, ProjectionParams, Resolved | None]:
    """(``init`` for ``enhance_files``/``project_to_files``, the projection's parameters, the
    encoder's provenance record) of a projection into ``G`` that starts from ``start``:
    'w_avg' (the paper's: nothing changes) or 'encoder' (``encoder``, else the committed
    mini-world encoder; parameters by :func:`from_a_guess`)."""
    if start not in INITS:
        raise DrfhqError(f"init {start!r}: must be one of {', '.join(INITS)}")
    if start == "w_avg":
        return None, params, None
    if encoder is None:
        committed = miniworld_encoder()
        if committed is None:
            raise DrfhqError(f"init 'encoder' needs an encoder file: {TRAIN_HINT}")
        encoder = committed.path
    init, _ = load_encoder_init(encoder, G, device)
    return init, from_a_guess(params), encoder_record(encoder, init.sha256)
