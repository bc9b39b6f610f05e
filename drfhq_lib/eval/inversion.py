"""Inversion baselines (Fig. 7, Sec. 5.2.1), the framework and inversion ablations (Fig. 11,
Sec. 5.3.2; Fig. 12, Sec. 5.3.3): the methods, Image2StyleGAN's projection, and the scores.

Compute only. Where the rest lives:

* ``drfhq_lib.eval.inversion_runs``: the resumable job that writes ``OUT/<method>/<name>.png``
  (and ``.npz``), ``OUT/aligned/<name>.png`` and ``OUT/inversion.csv``, takes encoder results
  from their folders, and Fig. 14's failure-case run;
* ``drfhq_lib.eval.inversion_figures``: the Fig. 7/11/12 and Fig. 14 grids.

A *method* turns an aligned rendered portrait into a photo-real one. Methods that run here (all
render their W+ with G_real's constant noise, as ``enhance`` does):

* ``ours``: Sec. 3.3's projection into G_rendering (``projection.project``), rendered by G_real;
* ``latent-optimisation``: the same projection straight into G_real (Fig. 7);
* ``baseline-framework``: projection into G_real with lambda_s L_sketch + lambda_c L_color added
  to Eq. 4 (``projection.identity_guide``; Fig. 11);
* ``i2s``: Image2StyleGAN (Abdal et al. 2019): W+ from the mean w, Adam at a constant lr 0.01,
  loss MSE + perceptual, no noise optimisation, 5000 steps in the original; projected into
  G_rendering and rendered by G_real (Fig. 12). The perceptual term is our LPIPS network, not
  I2S's own VGG16 layer sum.

Encoder baselines need their authors' code and checkpoints, which drfhq does not re-implement
(see ``inversion_runs`` for where their results go); pSp and e4e also run natively
(``nets.encoders``) when their official checkpoint is given.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from drfhq_lib.errors import DrfhqError
from drfhq_lib.finetune.losses import COLOR_SIZE, SKETCH_SIZE
from drfhq_lib.infer.enhance import Networks
from drfhq_lib.infer.projection import (Guide, Projection, ProjectionParams, distance_to,
                                        identity_guide, project_to_files, w_statistics)
from drfhq_lib.nets.identity import FaceEmbedder, identity_similarity
from drfhq_lib.nets.perceptual import LPIPSVGG16, resize
from drfhq_lib.nets.weights import Resolved


@dataclass(frozen=True)
class I2SParams:
    """Image2StyleGAN's embedding (Abdal et al. 2019, Sec. 4): Adam (0.9, 0.999, eps 1e-8) at a
    constant lr of 0.01 from the mean w, loss = mse_weight * MSE + perceptual_weight * LPIPS
    (images in [-1, 1] at ``loss_size``), generator noise fixed (not optimised)."""

    steps: int = 5000
    lr: float = 0.01
    mse_weight: float = 1.0
    perceptual_weight: float = 1.0
    loss_size: int = 256
    w_avg_samples: int = 10_000  # for the mean w, as the projector's
    seed: int = 0  # I2S draws nothing at random; kept so latents record it like the projector's

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class I2SProjection(Projection):
    """A projection plus what the I2S optimiser did: its lr at each step and what it moved."""

    learning_rates: list[float] = field(default_factory=list)
    optimised: list[str] = field(default_factory=list)


class I2SDistance:
    """I2S's loss per image: pixel MSE plus the perceptual (here LPIPS) distance.
    ``against(target)`` computes the target's LPIPS features once, as the projector does."""

    def __init__(self, lpips_net: LPIPSVGG16, params: I2SParams = I2SParams()):
        self.lpips, self.params = lpips_net, params

    def _total(self, synth, target, perceptual: torch.Tensor) -> torch.Tensor:
        mse = (synth - target).square().flatten(1).mean(1)
        return self.params.mse_weight * mse + self.params.perceptual_weight * perceptual

    def __call__(self, synth: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self._total(synth, target, self.lpips(synth, target))

    def against(self, target: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        if not hasattr(self.lpips, "against"):
            return lambda synth: self(synth, target)
        perceptual = self.lpips.against(target)
        return lambda synth: self._total(synth, target, perceptual(synth))


def i2s_distance(lpips_net: LPIPSVGG16, params: I2SParams = I2SParams()) -> I2SDistance:
    return I2SDistance(lpips_net, params)


def i2s_project(G, targets: torch.Tensor, distance: Callable, params: I2SParams = I2SParams(),
                seeds: list[int] | None = None, progress: bool = True,
                w_stats: tuple[torch.Tensor, float] | None = None,
                guide: Guide | None = None) -> I2SProjection:
    """Embed ``targets`` ``[N, 3, R, R]`` in W+ the I2S way (same arguments as
    ``projection.project``, so ``project_to_files`` can run it; ``seeds`` is unused).

    Only W+ is optimised; the synthesis uses the generator's constant noise, which stays as it
    is. Losses are per image and Adam is element-wise, so a batch equals one-by-one runs.
    """
    n, device = targets.shape[0], targets.device
    w_avg = (w_stats or w_statistics(G, params, device))[0]
    ws = w_avg.detach().reshape(1, 1, -1).repeat(n, G.num_ws, 1).requires_grad_(True)
    optimizer = torch.optim.Adam([ws], lr=params.lr, betas=(0.9, 0.999), eps=1e-8)
    loss_size = min(params.loss_size, G.img_resolution)  # compared smaller, never enlarged
    target_small = resize(targets.float(), loss_size)
    measure = distance_to(distance, target_small)
    history, lrs = [], []
    loss = dist = torch.zeros(n)
    for _ in tqdm(range(params.steps), desc=f"I2S {n}", disable=not progress, leave=False):
        synth = G.synthesis(ws, noise_mode="const")
        dist = measure(resize(synth, loss_size)).reshape(n)
        loss = dist + guide(synth, targets) if guide is not None else dist
        optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()
        optimizer.step()
        history.append(dist.detach().cpu().tolist())
        lrs.append(optimizer.param_groups[0]["lr"])
    return I2SProjection(ws.detach(), loss.detach().cpu().tolist(), dist.detach().cpu().tolist(),
                         params, history, learning_rates=lrs, optimised=["ws"])


@dataclass
class Context:
    """What methods share in one run: networks, losses and parameters."""

    nets: Networks
    lpips: LPIPSVGG16
    params: ProjectionParams
    i2s: I2SParams
    batch: int
    prefer: str
    device: torch.device
    progress: bool
    guide_sizes: tuple[int, int] = (SKETCH_SIZE, COLOR_SIZE)  # L_sketch's and L_color's
    _sketch: torch.nn.Module | None = None
    encoders: list[Resolved] = field(default_factory=list)  # checkpoints of native encoders

    def sketch(self) -> torch.nn.Module:
        """The sketch extractor, built only when a method needs it (the baseline framework)."""
        if self._sketch is None:
            from drfhq_lib.nets.sketch import build_sketch

            self._sketch = build_sketch(self.prefer, self.device)
        return self._sketch

    def resolved(self) -> list[Resolved]:
        extra = self._sketch.resolved if self._sketch is not None else []
        return [*self.nets.resolved, *self.lpips.resolved, *extra, *self.encoders]

# project(ctx, targets [name -> [3, R, R]], folder) -> latent files by name
Projector = Callable[[Context, dict, Path], dict]


def _ours(ctx: Context, targets: dict, folder: Path) -> dict:
    return project_to_files(ctx.nets.G_rendering, targets, folder, ctx.lpips, ctx.params,
                            ctx.batch, ctx.progress)


def _latent_optimisation(ctx: Context, targets: dict, folder: Path) -> dict:
    return project_to_files(ctx.nets.G_real, targets, folder, ctx.lpips, ctx.params, ctx.batch,
                            ctx.progress)


def _baseline_framework(ctx: Context, targets: dict, folder: Path) -> dict:
    return project_to_files(ctx.nets.G_real, targets, folder, ctx.lpips, ctx.params, ctx.batch,
                            ctx.progress, guide=identity_guide(ctx.sketch(), ctx.lpips,
                                                               sketch_size=ctx.guide_sizes[0],
                                                               color_size=ctx.guide_sizes[1]))


def _i2s(ctx: Context, targets: dict, folder: Path) -> dict:
    return project_to_files(ctx.nets.G_rendering, targets, folder,
                            i2s_distance(ctx.lpips, ctx.i2s), ctx.i2s, ctx.batch, ctx.progress,
                            projector=i2s_project)


@dataclass(frozen=True)
class Method:
    """One column of the comparison figures.

    ``project`` set: the method runs here and its W+ is rendered by G_real. Otherwise it is an
    encoder whose results come from the authors' code (``repo``, ``script``, ``checkpoint``).
    """

    name: str  # the folder under OUT and the ``method`` column
    label: str  # column title
    figures: str
    needs: str  # in words
    project: Projector | None = None
    repo: str = ""
    script: str = ""
    checkpoint: str = ""
    latent_rendered_by_real: bool = False  # an external W+ (.npz) is rendered by G_real

    @property
    def runs_here(self) -> bool:
        return self.project is not None

    def how_to_supply(self, out_dir: Path) -> str:
        """Why an encoder was not run, naming the checkpoint and where results go."""
        latent = " or its W+ as <name>.npz (array ws)" if self.latent_rendered_by_real else ""
        return (f"needs {self.checkpoint} ({self.repo}): run {self.script} on "
                f"{Path(out_dir) / 'aligned'} and save each result as "
                f"{Path(out_dir) / self.name}/<name>.png{latent}")

_ENCODER_NOTE = "the authors' code and checkpoint"

METHODS: dict[str, Method] = {m.name: m for m in [
    Method("ours", "ours", "Fig. 7, 11, 12, 14", "G_rendering and G_real, LPIPS",
           project=_ours),
    Method("latent-optimisation", "latent optimisation", "Fig. 7", "G_real, LPIPS",
           project=_latent_optimisation),
    Method("baseline-framework", "baseline framework", "Fig. 11",
           "G_real, LPIPS, sketch extractor", project=_baseline_framework),
    Method("i2s", "I2S", "Fig. 12", "G_rendering and G_real, LPIPS (as I2S's perceptual term)",
           project=_i2s),
    Method("e4e", "e4e", "Fig. 7", _ENCODER_NOTE, repo="omertov/encoder4editing",
           script="scripts/inference.py", checkpoint="e4e_ffhq_encode.pt"),
    Method("psp", "pSp", "Fig. 7", _ENCODER_NOTE, repo="eladrich/pixel2style2pixel",
           script="scripts/inference.py", checkpoint="psp_ffhq_encode.pt"),
    Method("hyperstyle", "HyperStyle", "Fig. 7", _ENCODER_NOTE, repo="yuval-alaluf/hyperstyle",
           script="scripts/inference.py --load_w_encoder",
           checkpoint="hyperstyle_ffhq.pt + faces_w_encoder.pt"),
    Method("restyle-psp", "ReStyle-pSp", "Fig. 7", _ENCODER_NOTE,
           repo="yuval-alaluf/restyle-encoder", script="scripts/inference_iterative.py",
           checkpoint="restyle_psp_ffhq_encode.pt"),
    Method("restyle-e4e", "ReStyle-e4e", "Fig. 7", _ENCODER_NOTE,
           repo="yuval-alaluf/restyle-encoder", script="scripts/inference_iterative.py",
           checkpoint="restyle_e4e_ffhq_encode.pt"),
    Method("e4e-drfhq", "e4e (DRFHQ)", "Fig. 12", _ENCODER_NOTE + ", fine-tuned on DRFHQ",
           repo="omertov/encoder4editing", script="scripts/inference.py",
           checkpoint="e4e_ffhq_encode.pt fine-tuned on DRFHQ (scripts/train.py)",
           latent_rendered_by_real=True),
    Method("restyle-e4e-drfhq", "ReStyle-e4e (DRFHQ)", "Fig. 12",
           _ENCODER_NOTE + ", fine-tuned on DRFHQ", repo="yuval-alaluf/restyle-encoder",
           script="scripts/inference_iterative.py",
           checkpoint="restyle_e4e_ffhq_encode.pt fine-tuned on DRFHQ (scripts/train_restyle_e4e.py)",
           latent_rendered_by_real=True),
]}

FIG7 = ["e4e", "psp", "hyperstyle", "restyle-psp", "restyle-e4e", "latent-optimisation", "ours"]

FIG11 = ["baseline-framework", "ours"]

FIG12 = ["e4e-drfhq", "restyle-e4e-drfhq", "i2s", "ours"]


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise DrfhqError(f"unknown inversion method {name!r}; choose from "
                         f"{', '.join(METHODS)}") from None


@torch.no_grad()
def result_metrics(result: torch.Tensor, aligned: torch.Tensor, lpips_net: LPIPSVGG16,
                   embedder: FaceEmbedder) -> dict:
    """LPIPS and identity similarity of one result ``[1, 3, S, S]`` to its aligned input."""
    distance = float(lpips_net(result, aligned)[0])
    identity = identity_similarity(aligned, result, embedder).values[0]
    return {"lpips": f"{distance:.4f}", "identity_similarity": f"{identity:.4f}",
            "identity_note": "no face found in the input or the result"
            if math.isnan(identity) else "",
            "embedder": embedder.label, "lpips_net": lpips_net.label}
