"""W+ projection (Sec. 3.3, Eq. 4) and the realism transfer it enables.

The projector follows the official StyleGAN2-ADA projector (learning-rate and latent-noise
schedules, noise regularisation, noise renormalisation) with two changes the paper makes: the
latent is W+ (one w per layer, initialised at w_avg) and it runs on a batch of targets with
independent per-image losses. Every per-image random draw comes from that image's own seeded
generator, so a batch gives the same latents as projecting the images one at a time.

``enhance`` = project into G_rendering, then render the W+ with G_real using constant noise
(the optimised noise is not used, as in the paper). The baselines of the figures use the same
projector: ``project(G_real, ...)`` is Fig. 7's "latent code optimisation", and
``project(G_real, ..., guide=identity_guide(...))`` Fig. 11's projection guided by L_sketch and
L_color.
"""

from __future__ import annotations

import json
import math
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from drfhq_lib.allocator import keep_freed_memory
from drfhq_lib.errors import DrfhqError
from drfhq_lib.files import atomic_path
from drfhq_lib.finetune.losses import (COLOR_SIZE, LAMBDA_COLOR, LAMBDA_SKETCH, SKETCH_SIZE,
                                       IdentityLosses, noise_regularization, normalize_noise_)

# distance(synth, target) -> one loss per image, images in [-1, 1] at the working size
Distance = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# guide(synth, target) -> an extra loss per image, images at the generator's resolution
Guide = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class ProjectionParams:
    """Defaults are the paper's (500 steps, lambda_n = 1e5) and the official projector's."""

    steps: int = 500
    initial_lr: float = 0.1
    lr_rampup: float = 0.05  # fraction of the steps
    lr_rampdown: float = 0.25
    initial_noise_factor: float = 0.05  # latent noise, times the std of w
    noise_ramp: float = 0.75
    noise_weight: float = 1e5  # lambda_n
    loss_size: int = 256  # images are compared at this size (area down-sampling)
    w_avg_samples: int = 10_000  # 0: use the generator's tracked w_avg
    seed: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Projection:
    """The result for one batch: W+ latents and the loss each image ended with."""

    ws: torch.Tensor  # [N, num_ws, w_dim]
    final_loss: list[float]
    final_distance: list[float]
    params: ProjectionParams
    history: list[list[float]] = field(default_factory=list)  # per step, per image distance


def learning_rate(step: int, p: ProjectionParams) -> float:
    """Official schedule: cosine ramp-down over the last ``lr_rampdown``, linear ramp-up."""
    t = step / p.steps
    ramp = min(1.0, (1.0 - t) / p.lr_rampdown)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    return p.initial_lr * ramp * min(1.0, t / p.lr_rampup)


def latent_noise_scale(step: int, p: ProjectionParams, w_std: float) -> float:
    t = step / p.steps
    return w_std * p.initial_noise_factor * max(0.0, 1.0 - t / p.noise_ramp) ** 2


@torch.no_grad()
def w_statistics(G, p: ProjectionParams, device: torch.device) -> tuple[torch.Tensor, float]:
    """(w_avg [w_dim], w_std) from mapped samples (official: 10 000, seed 123) or tracked w_avg.

    w_std always comes from samples (at least 1 000), since the latent-noise ramp needs it.
    """
    n = max(p.w_avg_samples, 1000)
    z = torch.from_numpy(np.random.RandomState(123).randn(n, G.z_dim))
    w = torch.cat([G.mapping(chunk.to(device, torch.float32), None)[:, 0]
                   for chunk in z.split(1000)])
    w_avg = w.mean(0) if p.w_avg_samples else G.mapping.w_avg.to(device, torch.float32)
    w_std = ((w - w_avg).square().sum() / n).sqrt().item()
    return w_avg, w_std


@contextmanager
def per_image_noise(G, noise: dict[str, torch.Tensor]) -> Iterator[None]:
    """Temporarily replace each layer's constant noise by a per-image ``[N, 1, H, W]`` map.

    The synthesis layers add ``noise_const * noise_strength`` to ``[N, C, H, W]`` features, so a
    batch of maps broadcasts per image; the buffers are restored afterwards.
    """
    modules = dict(G.synthesis.named_modules())
    saved = {}
    try:
        for name, value in noise.items():
            owner, attr = name.rsplit(".", 1)
            module = modules[owner]
            saved[name] = module._buffers[attr]
            module._buffers[attr] = value
        yield
    finally:
        for name, value in saved.items():
            owner, attr = name.rsplit(".", 1)
            modules[owner]._buffers[attr] = value


def _downsample(images: torch.Tensor, size: int) -> torch.Tensor:
    return F.interpolate(images, size=(size, size), mode="area") if images.shape[-1] > size else images


def _per_image_randn(generators: list[torch.Generator], shape: tuple[int, ...],
                     device: torch.device) -> torch.Tensor:
    return torch.stack([torch.randn(shape, generator=g) for g in generators]).to(device)


def default_batch(device: torch.device, resolution: int) -> int:
    """Portraits projected together by default. Batches pay on CPU too (with the allocator
    policy; benchmarks/bench_projection.py, 2 cores: 256 px 218 -> 160 s per portrait per 100
    steps at batch 8, 1024 px 794 -> 517 at batch 2); on CPU the batch shrinks with resolution
    because a 1024 px portrait's activations and gradients take about 5 GB."""
    if device.type != "cpu" or resolution <= 256:
        return 8
    return 4 if resolution <= 512 else 2


def distance_to(distance: Distance, target: torch.Tensor
                ) -> Callable[[torch.Tensor], torch.Tensor]:
    """``synth -> distance(synth, target)``; an LPIPS network computes the target's features
    once instead of at every step (``LPIPSVGG16.against``)."""
    if hasattr(distance, "against"):
        return distance.against(target)
    return lambda synth: distance(synth, target)


def project(G, targets: torch.Tensor, distance: Distance, params: ProjectionParams = ProjectionParams(),
            seeds: list[int] | None = None, progress: bool = True,
            w_stats: tuple[torch.Tensor, float] | None = None,
            guide: Guide | None = None, init_ws: torch.Tensor | None = None) -> Projection:
    """Find W+ (and noise) so that ``G.synthesis(W+)`` matches each target (Eq. 4).

    ``targets``: ``[N, 3, R, R]`` in [-1, 1] at the generator's resolution. ``seeds[i]`` seeds
    image i's latent noise and initial noise maps (default: ``params.seed + i``). ``guide``
    adds a per-image term computed on full-resolution images (see ``identity_guide``).
    ``init_ws``: ``[N, num_ws, w_dim]`` to start from (an encoder's guess, see
    ``infer.encoder_init``) instead of w_avg in every row (the paper's start).
    """
    n, device = targets.shape[0], targets.device
    if device.type == "cpu":
        keep_freed_memory()  # else batches page-fault their activations in at every step
    if targets.shape[1:] != (3, G.img_resolution, G.img_resolution):
        raise ValueError(f"targets must be [N, 3, {G.img_resolution}, {G.img_resolution}], "
                         f"got {tuple(targets.shape)}")
    seeds = seeds if seeds is not None else [params.seed + i for i in range(n)]
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    w_avg, w_std = w_stats if w_stats is not None else w_statistics(G, params, device)

    if init_ws is None:
        ws = w_avg.detach().reshape(1, 1, -1).repeat(n, G.num_ws, 1).requires_grad_(True)
    elif tuple(init_ws.shape) != (n, G.num_ws, G.w_dim):
        raise ValueError(f"init_ws must be [{n}, {G.num_ws}, {G.w_dim}], got "
                         f"{tuple(init_ws.shape)}")
    else:
        ws = init_ws.detach().to(device, torch.float32).clone().requires_grad_(True)
    shapes = {name: buf.shape[-2:] for name, buf in G.synthesis.named_buffers()
              if name.endswith("noise_const")}
    noise = {name: _per_image_randn(gens, (1, *hw), device).requires_grad_(True)
             for name, hw in shapes.items()}
    optimizer = torch.optim.Adam([ws, *noise.values()], betas=(0.9, 0.999), lr=params.initial_lr)
    measure = distance_to(distance, _downsample(targets.float(), params.loss_size))

    history = []
    bar = tqdm(range(params.steps), desc=f"projecting {n}", disable=not progress, leave=False)
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, params)
        w_noise = _per_image_randn(gens, tuple(ws.shape[1:]), device)
        with per_image_noise(G, noise):
            synth = G.synthesis(ws + w_noise * latent_noise_scale(step, params, w_std),
                                noise_mode="const")
        dist = measure(_downsample(synth, params.loss_size)).reshape(n)
        reg = noise_regularization(noise.values())
        loss = dist + params.noise_weight * reg
        if guide is not None:
            loss = loss + guide(synth, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()
        optimizer.step()
        normalize_noise_(noise.values())
        history.append(dist.detach().cpu().tolist())
        bar.set_postfix(dist=f"{dist.mean().item():.4f}")
    return Projection(ws.detach(), loss.detach().cpu().tolist(),
                      dist.detach().cpu().tolist(), params, history)


def identity_guide(sketch_net, lpips_net, lambda_sketch: float = LAMBDA_SKETCH,
                   lambda_color: float = LAMBDA_COLOR, sketch_size: int = SKETCH_SIZE,
                   color_size: int = COLOR_SIZE) -> Guide:
    """lambda_s L_sketch + lambda_c L_color between each target and G(w+) (the fine-tuning's
    ``losses.IdentityLosses``, per image): the framework ablation of Fig. 11 projects straight
    into G_real with these added to Eq. 4's loss. ``sketch_size``/``color_size``: where S and
    the blurred LPIPS look (the paper's 512/256; smaller only for quick CPU runs)."""
    terms = IdentityLosses(sketch_net, lpips_net, lambda_sketch, lambda_color,
                           sketch_size, color_size)

    def guide(synth: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return terms.per_image(target, synth)[0]
    return guide


@torch.no_grad()
def render(G, ws: torch.Tensor, batch: int = 8) -> torch.Tensor:
    """G(W+) with the generator's constant noise: how G_real shows a projected latent."""
    return torch.cat([G.synthesis(chunk, noise_mode="const") for chunk in ws.split(batch)])


def save_latent(path, ws: torch.Tensor, final_loss: float, final_distance: float,
                params: ProjectionParams, **extra) -> None:
    """One image's projection as ``.npz`` (W+, final loss, parameters), written atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, ws=ws.detach().cpu().numpy().astype(np.float32),
                     final_loss=np.float64(final_loss), final_distance=np.float64(final_distance),
                     steps=np.int64(params.steps),
                     params=np.array(json.dumps(params.as_dict())),
                     extra=np.array(json.dumps(extra, default=str)))


def load_latent(path) -> dict:
    with np.load(path, allow_pickle=False) as data:
        return {"ws": torch.from_numpy(data["ws"]), "final_loss": float(data["final_loss"]),
                "final_distance": float(data["final_distance"]), "steps": int(data["steps"]),
                "params": json.loads(str(data["params"])), "extra": json.loads(str(data["extra"]))}


def init_setting(init) -> str:
    """The start of a projection as a setting: 'w_avg', or the encoder with its file's sha256
    (:func:`~drfhq_lib.infer.encoder_init.load_encoder_init` puts it on ``init``), so that
    results made from one encoder are not kept as results of a retrained one."""
    if init is None:
        return "w_avg"
    digest = getattr(init, "sha256", None)
    return f"encoder sha256:{digest}" if digest else "encoder"


def check_kept_latent(path: Path, params: ProjectionParams, start: str) -> None:
    """Refuse to keep a latent made with other projection settings: a resumed run would report
    it as a result of these."""
    kept = load_latent(path)
    wanted = json.loads(json.dumps(params.as_dict()))
    changed = [f"{k}: {kept['params'].get(k)} -> {v}" for k, v in wanted.items()
               if kept["params"].get(k) != v]
    kept_start = kept["extra"].get("init", "w_avg")
    if kept_start != start:
        changed.append(f"init: {kept_start} -> {start}")
    if changed:
        raise DrfhqError(f"{path} was projected with other settings ({'; '.join(changed)}); "
                         f"delete {path.parent} or project into another folder")


def project_to_files(G, targets: dict[str, torch.Tensor], out_dir, distance: Distance,
                     params: ProjectionParams = ProjectionParams(), batch: int = 8,
                     progress: bool = True, guide: Guide | None = None,
                     projector: Callable[..., Projection] | None = None,
                     seeds: dict[str, int] | None = None,
                     w_stats: tuple[torch.Tensor, float] | None = None,
                     init: Callable[[torch.Tensor], torch.Tensor] | None = None,
                     ) -> dict[str, Path]:
    """Project named targets (``[3, R, R]`` each) in batches into ``out_dir/<name>.npz``.

    Each latent is saved as soon as its batch finishes; names whose file exists are skipped,
    so an interrupted run resumes where it stopped; a kept file made with other ``params`` or
    another start is refused (:func:`check_kept_latent`). ``projector`` (default ``project``, same
    arguments) swaps the optimiser, e.g. Image2StyleGAN's in ``inversion.i2s_project``.
    ``seeds``: each name's seed (default ``params.seed`` + its position in ``targets``), so a
    caller that projects a long list piece by piece keeps each item's seed; ``w_stats``:
    ``w_statistics`` computed once by such a caller. ``init``: ``targets [N, 3, R, R] -> W+
    [N, num_ws, w_dim]`` to start from (e.g. ``TrainedEncoder.ws``); default w_avg.
    """
    out_dir = Path(out_dir)
    paths = {name: out_dir / f"{name}.npz" for name in targets}
    start = init_setting(init)
    todo = [name for name in targets if not paths[name].exists()]
    for name in set(targets) - set(todo):
        check_kept_latent(paths[name], params, start)
    names_order = list(targets)
    for first in tqdm(range(0, len(todo), batch), desc="batches",
                      disable=not progress or len(todo) <= batch):  # one batch: its own bar
        names = todo[first:first + batch]
        device = targets[names[0]].device
        w_stats = w_stats or w_statistics(G, params, device)
        batch_seeds = [seeds[name] if seeds is not None
                       else params.seed + names_order.index(name) for name in names]
        batch_targets = torch.stack([targets[k] for k in names])
        init_kw = {} if init is None else {"init_ws": init(batch_targets)}
        result = (projector or project)(G, batch_targets, distance, params, batch_seeds,
                                        progress, w_stats, guide, **init_kw)
        for i, name in enumerate(names):
            save_latent(paths[name], result.ws[i], result.final_loss[i],
                        result.final_distance[i], params, seed=batch_seeds[i],
                        init=start)
    return paths
