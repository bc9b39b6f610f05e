"""Named generator variants: the rows and columns of the generator comparisons.

Fig. 9 / Tab. 1 / Tab. 2 (Sec. 5.2.3) compare StyleGAN2-FFHQ (G_real), StyleGAN-NADA, AgileGAN
and ours (G_rendering) on the same latents; Fig. 10 (Sec. 5.3.1) compares four fine-tunings
with L_sketch / L_color switched on and off; Fig. 13 / Tab. 3 (Sec. 5.3.4) two G_rendering
fine-tuned on two datasets, used to enhance the same held-out renders.

A :class:`Variant` is one named generator and how it was obtained (loaded by
``drfhq_lib.eval.variant_files``; drawn by ``drfhq_lib.eval.variant_figures``):

* a network file (official pickle, rosinality ``.pt`` such as StyleGAN-NADA's, or ours);
* a fine-tuning run folder (its newest complete snapshot, once the run reached its kimg);
* a run trained on request (``train=True``) with :class:`~drfhq_lib.finetune.Trainer`, which
  resumes a stopped run and does nothing for a finished one;
* or "not run", with the reason and what to give to run it -- never a stand-in image.

``trained`` is False whenever the generator comes from an untrained stand-in (the tiny CI source
or a run fine-tuned from it): figures must say so and tables carry the flag.

This module computes (same latents through each variant, Tab. 1-3 rows); it reads no network
file and draws no figure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn

from drfhq_lib import finetune
from drfhq_lib.errors import DrfhqError
from drfhq_lib.eval import metrics
from drfhq_lib.infer.enhance import Networks
from drfhq_lib.infer.projection import render
from drfhq_lib.nets.identity import FaceEmbedder, IdentityResult
from drfhq_lib.nets.latents import seed_range, z_from_seeds
from drfhq_lib.nets.perceptual import LPIPSVGG16
from drfhq_lib.nets.weights import Resolved

OK, NOT_RUN = "ok", "not run"

#: Fig. 10: variant name -> the loss switches of its fine-tuning (Sec. 5.3.1).
LOSS_ABLATION: dict[str, dict[str, bool]] = {
    "baseline": {"sketch": False, "color": False},
    "no_sketch": {"sketch": False, "color": True},
    "no_color": {"sketch": True, "color": False},
    "full": {"sketch": True, "color": True},
}

LOSS_ABLATION_LABELS = {"baseline": "baseline",
                        "no_sketch": "w/o L_sketch", "no_color": "w/o L_color",
                        "full": "full (ours)"}

#: Tab. 3's L2, as computed by metrics.pair_table.
L2_DEFINITION = ("L2 = mean over pixels and RGB channels of the squared difference of the two "
                 "images in [-1, 1] (4x the mean squared error of images in [0, 1])")


@dataclass
class Variant:
    """One named generator, or the reason it is missing."""

    name: str
    G: nn.Module | None = None
    status: str = NOT_RUN
    reason: str = ""
    origin: str = ""  # the file or run folder it was asked from
    network_file: str = ""  # the file actually loaded
    kimg: float | None = None  # fine-tuning length, for run folders
    trained: bool = False  # False: an untrained stand-in, or fine-tuned from one
    resolved: list[Resolved] = field(default_factory=list)

    @property
    def ran(self) -> bool:
        return self.G is not None

    def as_row(self) -> dict:
        return {"generator": self.name, "status": self.status, "reason": self.reason,
                "trained": self.trained, "kimg": "" if self.kimg is None else self.kimg,
                "network_file": self.network_file}


def not_run(name: str, reason: str, origin: str | Path | None = None) -> Variant:
    return Variant(name, reason=reason, origin=str(origin or ""))


def networks_used(variants: Iterable[Variant], *more: Resolved) -> list[Resolved]:
    """Every external network behind the variants (and ``more``), each once, for provenance."""
    seen, out = set(), []
    for r in [r for v in variants for r in v.resolved] + list(more):
        key = (r.name, r.kind, r.label, str(r.path))
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def loss_ablation_configs(base: finetune.FinetuneConfig, folders: Mapping[str, str | Path]
                          ) -> dict[str, finetune.FinetuneConfig]:
    """Fig. 10's four runs: ``base`` with the loss switches of :data:`LOSS_ABLATION`, each in
    its own folder (``folders[name]``)."""
    return {name: replace(base, out=str(folders[name]), **switches)
            for name, switches in LOSS_ABLATION.items()}


def same_space_problem(reference: nn.Module, G: nn.Module) -> str:
    """Why ``G`` cannot render ``reference``'s W+ ('' when it can)."""
    if (G.num_ws, G.w_dim) != (reference.num_ws, reference.w_dim):
        return (f"its W+ is [{G.num_ws}, {G.w_dim}], G_real's [{reference.num_ws}, "
                f"{reference.w_dim}]: not the same latent space")
    return ""


def in_same_space(reference: Variant, variants: Iterable[Variant]) -> list[Variant]:
    """The variants, with any that cannot share G_real's W+ turned into "not run"."""
    out = []
    for v in variants:
        problem = same_space_problem(reference.G, v.G) if v.ran else ""
        out.append(not_run(v.name, f"{v.network_file}: {problem}", v.origin) if problem else v)
    return out


def fixed_ws(reference: nn.Module, count: int, seed: int = 0,
             device: torch.device | str = "cpu", truncation_psi: float = 1.0) -> torch.Tensor:
    """W+ [count, num_ws, w_dim] of seeded z through the reference generator's mapping."""
    z = z_from_seeds(seed_range(seed, count), reference.z_dim, device)
    with torch.no_grad():
        return reference.mapping(z, None, truncation_psi=truncation_psi)


def render_same_latents(reference: Variant, variants: Sequence[Variant], count: int,
                        seed: int = 0, device: torch.device | str = "cpu",
                        truncation_psi: float = 1.0) -> dict[str, torch.Tensor | None]:
    """Name -> images [count, 3, R, R] in [-1, 1] (CPU) of the same W+ through each variant's
    synthesis network (constant noise); None for a variant that did not run."""
    ws = fixed_ws(reference.G, count, seed, device, truncation_psi)
    return {v.name: render(v.G, ws).cpu() if v.ran else None for v in variants}


def distances(variant: Variant, datasets: Mapping[str, str | Path | None], num: int,
              batch: int = 32, device: torch.device | str = "cpu", prefer: str = "auto",
              seed: int = 2020, truncation_psi: float = 1.0,
              noise_mode: str = "random") -> dict:
    """Tab. 1 for one generator: its distance to each dataset (FID with the official
    Inception, else FD-dlib; the ``distance_metric`` column says which). Samples are drawn
    with ``noise_mode`` ("random", the official metric's, or "const"; the ``distance_noise``
    column says which). A distance that cannot be computed is NaN with the reason in
    ``distance_note``; never a made-up value."""
    row, notes, names = {}, [], set()
    for key, path in datasets.items():
        row[f"distance_{key}"], row[f"n_samples_{key}"] = math.nan, 0
        if not variant.ran:
            continue
        if not path:
            notes.append(f"{key}: no dataset given")
            continue
        source = metrics.GeneratorSource.from_stylegan(variant.G, truncation_psi, noise_mode)
        try:
            result = metrics.generator_distance(source, Path(path).expanduser(), num, batch,
                                                device, prefer, seed)
        except DrfhqError as err:  # e.g. FD-dlib found no faces: say so, never a number
            row[f"n_samples_{key}"] = num
            notes.append(f"{key}: {err}")
            continue
        row[f"distance_{key}"], row[f"n_samples_{key}"] = result.value, result.n_a
        names.add(result.metric)
    return {**row, "distance_metric": "/".join(sorted(names)) or _distance_name(prefer),
            "distance_noise": noise_mode, "distance_note": "; ".join(notes)}


def _distance_name(prefer: str) -> str:
    """The metric ``generator_distance`` would use, for rows where none was computed."""
    from drfhq_lib.nets import weights

    try:
        return "FID" if weights.resolve("inception-fid", prefer).is_official else "FD-dlib"
    except DrfhqError:
        return "FID"


def paired_metrics(reference: Variant, variant: Variant, num: int, batch: int = 16,
                   seed: int = 0, device: torch.device | str = "cpu",
                   embedder: FaceEmbedder | None = None, lpips_net: LPIPSVGG16 | None = None,
                   truncation_psi: float = 1.0) -> dict:
    """Identity similarity (Tab. 2) and/or LPIPS and L2 (Fig. 10's table) between G_real(w)
    and G_variant(w) over ``num`` seeded latents, streamed batch by batch (2k latents at 1024
    px do not fit in memory at once). Rows without a face count in ``n_no_face``."""
    identity = IdentityResult(embedder.label, [], list(embedder.resolved)) if embedder else None
    pairs = metrics.PairResult(lpips_net.label, resolved=list(lpips_net.resolved)) \
        if lpips_net is not None else None
    if variant.ran:
        for a, b in metrics.paired_samples(reference.G, variant.G, num, batch, seed, device,
                                           truncation_psi):
            if identity is not None:
                identity = identity.merged(metrics.identity_over([(a, b)], embedder))
            if pairs is not None:
                batch_result = metrics.pair_table([(a, b)], lpips_net)
                pairs.lpips += batch_result.lpips
                pairs.l2 += batch_result.l2
    row = {}
    if identity is not None:
        row.update(identity.as_row() if identity.values else
                   {"identity_similarity": math.nan, "n_pairs": 0, "n_no_face": 0,
                    "embedder": identity.label})
    if pairs is not None:
        row.update(pairs.as_row() if pairs.n_pairs else
                   {"lpips": math.nan, "l2": math.nan, "n_pairs": 0,
                    "lpips_variant": pairs.label})
    return row


def comparison_row(reference: Variant, variant: Variant, num_pairs: int,
                   datasets: Mapping[str, str | Path | None] | None = None, num_fid: int = 0,
                   batch: int = 16, seed: int = 0, device: torch.device | str = "cpu",
                   prefer: str = "auto", embedder: FaceEmbedder | None = None,
                   lpips_net: LPIPSVGG16 | None = None, truncation_psi: float = 1.0,
                   fid_noise: str = "random") -> dict:
    """One table row with the same columns for every variant: what it is, its distance to
    each of ``datasets`` (Tab. 1, samples with ``fid_noise``: "random" as the official metric,
    or "const"), and its identity similarity / LPIPS / L2 to G_real over ``num_pairs``
    latents (Tab. 2, Fig. 10; both generators render one W+ with the same constant noise).
    The reference itself gets blank pair columns."""
    # Why both: samples of any variant are drawn through G_real's mapping and compared with it.
    row = {**variant.as_row(), "trained": variant.trained and reference.trained}
    if datasets:
        row.update(distances(variant, datasets, num_fid, batch, device, prefer, seed + 2020,
                             truncation_psi, fid_noise))
    measured = variant if variant is not reference else not_run(variant.name, "reference")
    row.update(paired_metrics(reference, measured, num_pairs, batch, seed, device, embedder,
                              lpips_net, truncation_psi))
    if variant is reference:
        row["reason"] = "reference (G_real): pair columns compare the others with it"
    return finite_or_blank(row)


def networks_of(real: Variant, rendering: Variant) -> Networks:
    """The enhance pipeline's two generators, labelled; untrained when either is."""
    if not (real.ran and rendering.ran):
        raise DrfhqError(f"{rendering.name}: cannot enhance without both generators "
                         f"({rendering.reason or real.reason})")
    return Networks(real.G, rendering.G, real.name, rendering.name,
                    real.trained and rendering.trained, list(real.resolved))


def pair_row(pairs: Sequence[tuple[torch.Tensor, torch.Tensor]],
             scorer: "metrics.PairScorer | LPIPSVGG16") -> dict:
    """Tab. 3 for one variant under one protocol (``scorer``: a ``metrics.PairScorer``, or a
    plain LPIPS network for the images as given): mean LPIPS and L2 (:data:`L2_DEFINITION`)
    over the pairs at the protocol's size, and the same L2 in [0, 1] units; NaN without pairs
    (and LPIPS NaN, with the reason in ``lpips_note``, where the protocol's network is
    missing)."""
    scorer = metrics.as_scorer(scorer)
    row = scorer.row(scorer.score(pairs))
    return {**row, "mse_01": row["l2"] / 4.0}


def dataset_rows(real: Variant, renderings: Sequence[Variant],
                 pairs: Mapping[str, Sequence[tuple[torch.Tensor, torch.Tensor]]],
                 scorers: "Sequence[metrics.PairScorer] | LPIPSVGG16") -> list[dict]:
    """Tab. 3: one row per protocol and G_rendering (named after its dataset), protocols in
    the order given (``metrics.pair_scorers``: the literature's 256-alex first), each with
    its pair metrics on the same pairs."""
    scorers = [scorers] if isinstance(scorers, nn.Module) else list(scorers)
    return [finite_or_blank({**r.as_row(), "trained": r.trained and real.trained,
                             **pair_row(pairs.get(r.name, []), scorer),
                             "l2_definition": L2_DEFINITION})
            for scorer in scorers for r in renderings]


def finite_or_blank(row: Mapping) -> dict:
    """NaN -> '' for CSV cells, so a missing value is never read as a number."""
    return {k: ("" if isinstance(v, float) and not np.isfinite(v) else v) for k, v in row.items()}
