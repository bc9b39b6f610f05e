"""SDEdit (Meng et al. 2022), the diffusion baseline of Fig. 8 (Sec. 5.2.2): compute only.

SDEdit projects an image onto the manifold of a diffusion model's images by noising it to an
intermediate time ``t0`` and denoising it from there back to 0. Here, with a ``diffusers``
scheduler and UNet (:class:`drfhq_lib.nets.diffusion.DiffusionModel`):

1. the input ``[N, 3, H, W]`` in [-1, 1] is resized to the model's resolution and, for latent
   diffusion, encoded by the autoencoder (its latents times ``latent_scale``, as diffusers' LDM
   pipeline scales them);
2. the scheduler's inference timesteps over the whole chain are set (``steps`` of them, the
   ``num_inference_steps`` of diffusers); SDEdit keeps those at or below ``t0 * T`` (T: the
   training steps), so it starts at the largest timestep <= t0 * T (300 of 1000 for t0 = 0.3
   with 50 DDIM steps) and takes about ``t0 * steps`` denoising steps;
3. ``x_t0 = scheduler.add_noise(x0, noise, t_start)``, then ``scheduler.step`` down to 0; each
   sample has its own ``torch.Generator`` seeded with its seed, which draws its start noise and
   (``eta`` > 0, or DDPM) the noise of every step, so a sample depends only on its input and
   seed, not on the batch it ran in;
4. decoded (latent diffusion) and clamped to [-1, 1].

The paper samples three results per input at t0 = 0.3 from an LDM trained on FFHQ 256; the
sampler is not stated. The defaults here: DDIM with eta = 1 (a stochastic sampler, as SDEdit's
SDE), 200 steps over the chain (60 from t0 = 0.3).
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import asdict, dataclass

import torch
from tqdm.auto import tqdm

from drfhq_lib.errors import DrfhqError
from drfhq_lib.nets.diffusion import DiffusionModel
from drfhq_lib.nets.perceptual import resize


@dataclass(frozen=True)
class SDEditParams:
    t0: float = 0.3  # the paper's
    seeds: tuple[int, ...] = (0, 1, 2)  # one sample per seed (the paper: three per input)
    steps: int = 200  # inference timesteps over the whole chain; about t0 * steps are run
    eta: float = 1.0  # DDIM's eta (0: deterministic after the start noise); DDPM ignores it
    batch: int = 4  # samples per forward pass (results do not depend on it)

    def __post_init__(self):
        if not 0.0 < self.t0 <= 1.0:
            raise DrfhqError(f"SDEdit t0 must be in (0, 1], not {self.t0}")
        if not self.seeds:
            raise DrfhqError("SDEdit needs at least one seed (one sample per seed)")
        if self.steps < 1 or self.batch < 1:
            raise DrfhqError("SDEdit steps and batch must be at least 1")

    def as_dict(self) -> dict:
        return {**asdict(self), "seeds": list(self.seeds)}


@dataclass
class SDEditResult:
    samples: torch.Tensor  # [N, len(seeds), 3, R, R] float32 in [-1, 1], R: the model's size
    timesteps: list[int]  # the denoising timesteps, first (the start, ~t0 * T) to last
    num_train_timesteps: int
    seeds: tuple[int, ...]

    @property
    def start_timestep(self) -> int:
        return self.timesteps[0]


def sdedit_timesteps(scheduler, t0: float, steps: int) -> list[int]:
    """The timesteps SDEdit denoises through: the scheduler's ``steps`` inference timesteps
    over the whole chain, those at or below ``t0 * T``. Sets the scheduler's timesteps."""
    scheduler.set_timesteps(steps)
    T = int(scheduler.config.num_train_timesteps)
    kept = [int(t) for t in scheduler.timesteps if int(t) <= t0 * T]
    if not kept:
        raise DrfhqError(f"SDEdit t0 = {t0} is below the first of {steps} inference steps "
                         f"({int(scheduler.timesteps[-1])} of {T}): raise t0 or steps")
    return kept


def _step_kwargs(scheduler, eta: float, generators: list[torch.Generator]) -> dict:
    accepted = set(inspect.signature(scheduler.step).parameters)
    kwargs = {"generator": generators} if "generator" in accepted else {}
    if "eta" in accepted:
        kwargs["eta"] = eta
    return kwargs


def _encode(model: DiffusionModel, images: torch.Tensor) -> torch.Tensor:
    if model.autoencoder is None:
        return images
    encoded = model.autoencoder.encode(images)
    latents = encoded.latents if hasattr(encoded, "latents") else encoded.latent_dist.mode()
    return latents * model.latent_scale


def _decode(model: DiffusionModel, latents: torch.Tensor) -> torch.Tensor:
    if model.autoencoder is None:
        return latents
    return model.autoencoder.decode(latents / model.latent_scale).sample


@torch.no_grad()
def sdedit(model: DiffusionModel, images: torch.Tensor, params: SDEditParams = SDEditParams(),
           device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
           progress: bool = True) -> SDEditResult:
    """``len(params.seeds)`` SDEdit samples of each image ``[N, 3, H, W]`` in [-1, 1].

    ``model`` must already be on ``device`` in ``dtype`` (``load_diffusion(folder, device,
    dtype)``). Generators live on the CPU, so a seed gives the same noise on every device.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected [N, 3, H, W] images, got {tuple(images.shape)}")
    device = torch.device(device)
    scheduler = copy.deepcopy(model.scheduler)  # set_timesteps and add_noise change its state
    timesteps = sdedit_timesteps(scheduler, params.t0, params.steps)
    x0 = _encode(model, resize(images.to(device=device, dtype=torch.float32),
                               model.resolution).to(dtype))
    k = len(params.seeds)
    jobs = [(i, j) for i in range(len(images)) for j in range(k)]  # (input, seed index)
    out = torch.empty(len(images), k, 3, model.resolution, model.resolution)
    bar = tqdm(total=len(jobs) * len(timesteps), desc="SDEdit", disable=not progress,
               leave=False)
    for start in range(0, len(jobs), params.batch):
        chunk = jobs[start:start + params.batch]
        generators = [torch.Generator("cpu").manual_seed(int(params.seeds[j])) for _, j in chunk]
        clean = x0[[i for i, _ in chunk]]
        noise = torch.cat([torch.randn((1, *clean.shape[1:]), generator=g, dtype=torch.float32)
                           for g in generators]).to(device=device, dtype=dtype)
        start_t = torch.full((len(chunk),), timesteps[0], dtype=torch.long)
        x = scheduler.add_noise(clean, noise, start_t)
        extra = _step_kwargs(scheduler, params.eta, generators)
        for t in timesteps:
            model_input = scheduler.scale_model_input(x, t)
            predicted = model.unet(model_input, t).sample
            x = scheduler.step(predicted, t, x, **extra).prev_sample
            bar.update(len(chunk))
        images_out = _decode(model, x).float().clamp(-1, 1).cpu()
        for (i, j), image in zip(chunk, images_out):
            out[i, j] = image
    bar.close()
    return SDEditResult(out, timesteps, model.num_train_timesteps, tuple(params.seeds))
