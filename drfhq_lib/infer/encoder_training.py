"""Training a W+ encoder for a generator: the computation (:mod:`.encoder_job` runs it as a
resumable job with snapshots).

The encoder (pSp/e4e's native layout, :mod:`drfhq_lib.nets.encoders`, narrowed to train on a
CPU) learns the inverse of the generator on images the generator itself samples, whose W+ is
known: each step draws ``batch`` latents (z -> w through the frozen mapping; optionally
style-mixed at a random layer, so targets cover W+ and not only W), renders them with constant
noise, and regresses the W+ the encoder predicts on the true one (``latent`` loss, in units of
the generator's w variance: 1.0 is what w_avg scores). Image losses compare G(predicted W+)
with the input: pixel L2 and LPIPS (both on by default), on the sampled images every
``image_every`` steps and, when a folder of real inputs is given, on those every
``real_every`` steps (real inputs have no known W+, so they get the image losses only). The
pixel loss matters: many directions of W barely change the image (in the mini world, w's
principal directions past the 16th move pixels ~30x less than the first few), so the latent
loss alone spends its gradient on what the image cannot tell. The prediction is ``codes +
w_avg`` (pSp's start_from_latent_avg), with the heads' last layers started near zero: an
untrained encoder starts the projection where w_avg does.

Every random draw of step ``k`` comes from a generator seeded by ``(seed, k)``, so a run
resumed from a snapshot takes the same steps as one that never stopped.
"""

from __future__ import annotations

import dataclasses
import math
from copy import deepcopy as copy_module
from dataclasses import dataclass, field

import torch

from drfhq_lib.infer.projection import ProjectionParams, learning_rate, w_statistics
from drfhq_lib.nets.encoders import ENCODER_CLASSES, StyleEncoder
from drfhq_lib.nets.perceptual import resize

# A narrow IR-SE backbone for up to 64-128 px faces: about 2.3 M parameters with 64-wide heads
# (the official IR-SE50 has 24 units up to 512 channels and 512-wide heads: ~230 M).
SMALL_STAGES = ((16, 32, 1), (32, 48, 1), (48, 96, 2), (96, 128, 1))
HEAD_INIT_GAIN = 0.1  # the heads' linear layers start at a tenth: outputs near w_avg
LATENT_EVAL_SAMPLES = 64  # fixed generator samples (seed 1) the validation loss is measured on
EVAL_SEED = 1
CALIBRATION_IMAGES = 512  # real inputs the saved encoder's BatchNorm statistics average over
CALIBRATION_MIN_IMAGES = 64  # fewer give statistics noisier than the training batches' ones


@dataclass
class EncoderTrainConfig:
    """What ``drfhq encoder train`` trains; defaults fit a 64 px generator on a CPU."""

    kind: str = "e4e"  # "e4e" (w0 + per-row offsets) or "psp" (one head per row)
    stages: tuple = SMALL_STAGES
    head_channels: int | None = 64  # None: heads as wide as w (the official layout)
    input_size: int | None = None  # None: half the generator's resolution, at most 256
    kimg: float = 1.6  # thousands of sampled images
    batch: int = 8
    lr: float = 3e-3  # Adam; cosine ramp-down over the last quarter
    mixing: float = 0.0  # probability that a sample mixes two w at a random layer
    latent_weight: float = 1.0
    lpips_weight: float = 1.0  # image losses on the sampled images ...
    pixel_weight: float = 1.0
    image_every: int = 1  # ... every this many steps
    real_lpips_weight: float = 1.0  # image losses on the real inputs (--images) ...
    real_pixel_weight: float = 1.0
    real_every: int = 4  # ... every this many steps
    real_batch: int = 8
    delta_weight: float = 0.0  # e4e: L2 of the offsets of rows 1.. from row 0
    seed: int = 0

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["stages"] = [list(s) for s in self.stages]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "EncoderTrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        if "stages" in d:
            d["stages"] = tuple(map(tuple, d["stages"]))
        return cls(**d)

    @property
    def total_steps(self) -> int:
        return max(1, math.ceil(self.kimg * 1000 / self.batch))

    def uses_lpips(self, has_real: bool) -> bool:
        return self.lpips_weight > 0 or (has_real and self.real_lpips_weight > 0)


def encoder_input_size(G, requested: int | None) -> int:
    """The face size the encoder reads: ``requested``, else half the generator's resolution
    (at most 256, the official input): the guess only has to land in the projector's basin,
    and a 4x smaller input makes the encoder about 4x cheaper to train."""
    return int(requested or min(G.img_resolution // 2, 256))


def build_encoder(G, cfg: EncoderTrainConfig) -> StyleEncoder:
    """A freshly initialised encoder for ``G``'s W+ (seeded by ``cfg.seed``)."""
    if cfg.kind not in ENCODER_CLASSES:
        raise ValueError(f"kind must be one of {', '.join(ENCODER_CLASSES)}, not {cfg.kind!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        enc = ENCODER_CLASSES[cfg.kind](G.num_ws, G.w_dim, tuple(map(tuple, cfg.stages)),
                                        encoder_input_size(G, cfg.input_size), cfg.head_channels)
    with torch.no_grad():
        for head in enc.styles:
            head.linear.weight.mul_(HEAD_INIT_GAIN)
    return enc


@torch.no_grad()
def calibrated(encoder: StyleEncoder, batches) -> StyleEncoder:
    """A copy of ``encoder``, in eval mode, whose BatchNorm running statistics are the plain
    average over ``batches`` (encoder inputs [k, 3, S, S]); its weights are unchanged.

    Why: most training batches are generator samples, so the running statistics are theirs,
    yet the encoder is applied to real inputs. In the mini world the shift costs more than
    anything else: the 12-kimg encoder's guesses for held-out R renders score LPIPS 0.117 with
    its training statistics and 0.063 with those of 400 R renders."""
    copy = copy_module(encoder)
    norms = [m for m in copy.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # None: a cumulative average, every batch weighted alike
    copy.train()
    for batch in batches:
        copy(batch)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    return copy.eval()


def calibration_batches(count: int, batch: int) -> list[list[int]]:
    """Indices of up to ``CALIBRATION_IMAGES`` of ``count`` real inputs, evenly spaced, in
    batches of ``batch`` (a last batch of one joins the one before: BatchNorm needs two)."""
    n = min(count, CALIBRATION_IMAGES)
    indices = torch.linspace(0, count - 1, n).round().long().tolist() if n else []
    chunks = [indices[i:i + batch] for i in range(0, n, batch)]
    if len(chunks) > 1 and len(chunks[-1]) < 2:
        last = chunks.pop()
        chunks[-1] += last
    return chunks


def step_generator(seed: int, step: int) -> torch.Generator:
    """The CPU generator of every random draw of one step (resume-proof)."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


@torch.no_grad()
def sample_targets(G, count: int, gen: torch.Generator, mixing: float,
                   device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(images [N, 3, R, R], their W+ [N, num_ws, w_dim]): ``count`` generator samples, a
    ``mixing`` fraction of them style-mixed at a random layer (rows from the cut on take the
    second w), rendered with the generator's constant noise."""
    z = torch.randn(2, count, G.z_dim, generator=gen).to(device)
    ws = G.mapping(z[0])
    if mixing > 0 and G.num_ws > 1:
        other = G.mapping(z[1])
        cut = torch.randint(1, G.num_ws, (count,), generator=gen).to(device)
        mixed = torch.rand(count, generator=gen).to(device) < mixing
        rows = torch.arange(G.num_ws, device=device)[None]
        take = (rows >= cut[:, None]) & mixed[:, None]
        ws = torch.where(take[..., None], other, ws)
    return G.synthesis(ws, noise_mode="const"), ws


def latent_loss(pred: torch.Tensor, target: torch.Tensor, w_var: float) -> torch.Tensor:
    """Mean squared W+ error per image, over the per-coordinate variance of w: [N]."""
    return (pred - target).square().mean((1, 2)) / w_var


@dataclass
class EncoderTrainer:
    """One encoder being trained against one frozen generator; ``step()`` runs one step."""

    G: torch.nn.Module
    cfg: EncoderTrainConfig
    device: torch.device
    lpips: torch.nn.Module | None = None
    real: object | None = None  # real(indices [k]) -> images [k, 3, R, R] in [-1, 1]
    real_count: int = 0
    val_images: torch.Tensor | None = None  # held-out real inputs [M, 3, R, R], validation only
    encoder: StyleEncoder = field(init=False)
    step_index: int = 0
    seconds: float = 0.0
    log: list = field(default_factory=list)

    def __post_init__(self):
        self.device = torch.device(self.device)
        self.G = self.G.eval().requires_grad_(False)
        w_avg, w_std = w_statistics(self.G, ProjectionParams(), self.device)
        self.latent_avg = w_avg.reshape(1, -1).repeat(self.G.num_ws, 1)
        self.w_var = w_std ** 2 / self.G.w_dim  # per-coordinate variance of w
        self.encoder = build_encoder(self.G, self.cfg).to(self.device).train()
        self.optimizer = torch.optim.Adam(self.encoder.parameters(), lr=self.cfg.lr,
                                          betas=(0.9, 0.999))
        needs_lpips = self.cfg.uses_lpips(self.real_count > 0) or self.val_images is not None
        if needs_lpips and self.lpips is None:
            raise ValueError("the image losses and the real-input validation need an LPIPS "
                             "network (lpips=...)")

    # ------------------------------------------------------------------------- state
    @property
    def images_seen(self) -> int:
        return self.step_index * self.cfg.batch

    @property
    def kimg(self) -> float:
        return self.images_seen / 1000

    @property
    def done(self) -> bool:
        return self.step_index >= self.cfg.total_steps

    def state(self) -> dict:
        """Everything a resumed run needs (tensors and plain data: weights-only loadable)."""
        return {"encoder": self.encoder.state_dict(), "optimizer": self.optimizer.state_dict(),
                "step": self.step_index, "seconds": self.seconds, "log": list(self.log),
                "config": self.cfg.as_dict()}

    def load_state(self, state: dict) -> None:
        self.encoder.load_state_dict(state["encoder"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step_index = int(state["step"])
        self.seconds = float(state.get("seconds", 0.0))
        self.log = list(state.get("log", []))

    # ------------------------------------------------------------------------- steps
    def predict(self, images: torch.Tensor, encoder: StyleEncoder | None = None) -> torch.Tensor:
        encoder = encoder or self.encoder
        return encoder(resize(images, encoder.input_size)) + self.latent_avg[None]

    @property
    def calibrates(self) -> bool:
        """Whether the saved encoder's BatchNorm statistics are measured on the real inputs."""
        return self.real_count >= max(2, CALIBRATION_MIN_IMAGES)

    def deployable(self) -> StyleEncoder:
        """The encoder as it is saved: with real inputs, a :func:`calibrated` copy whose
        BatchNorm statistics are those of the real inputs (the images it will be applied to);
        with fewer than ``CALIBRATION_MIN_IMAGES`` of them, the training encoder itself."""
        if not self.calibrates:
            return self.encoder
        size = self.encoder.input_size
        batches = (resize(self.real(chunk).to(self.device), size)
                   for chunk in calibration_batches(self.real_count, self.cfg.real_batch))
        return calibrated(self.encoder, batches)

    def _image_losses(self, images: torch.Tensor, ws: torch.Tensor, lpips_weight: float,
                      pixel_weight: float) -> dict[str, torch.Tensor]:
        synth = self.G.synthesis(ws, noise_mode="const")
        out = {}
        if pixel_weight > 0:
            out["pixel"] = pixel_weight * (synth - images).square().mean((1, 2, 3))
        if lpips_weight > 0:
            out["lpips"] = lpips_weight * self.lpips(synth, images).flatten()
        return out

    def step(self) -> dict[str, float]:
        """One optimisation step; returns its losses (means over the batch)."""
        import time

        start = time.perf_counter()
        cfg, k = self.cfg, self.step_index
        gen = step_generator(cfg.seed, k)
        lr = learning_rate(k, ProjectionParams(steps=cfg.total_steps, initial_lr=cfg.lr,
                                               lr_rampup=0.02, lr_rampdown=0.25))
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        images, ws = sample_targets(self.G, cfg.batch, gen, cfg.mixing, self.device)
        pred = self.predict(images)
        terms = {"latent": cfg.latent_weight * latent_loss(pred, ws, self.w_var)}
        if cfg.delta_weight > 0 and self.encoder.kind == "e4e":
            terms["delta"] = cfg.delta_weight * latent_loss(pred[:, 1:], pred[:, :1],
                                                            self.w_var)
        if (cfg.lpips_weight > 0 or cfg.pixel_weight > 0) and k % cfg.image_every == 0:
            terms.update(self._image_losses(images, pred, cfg.lpips_weight, cfg.pixel_weight))
        loss = sum(t.mean() for t in terms.values())
        if self.real_count and k % cfg.real_every == cfg.real_every - 1:
            idx = torch.randint(0, self.real_count, (cfg.real_batch,), generator=gen)
            flip = torch.rand(cfg.real_batch, generator=gen) < 0.5
            real = self.real(idx.tolist()).to(self.device)
            real = torch.where(flip.to(self.device)[:, None, None, None], real.flip(3), real)
            real_terms = self._image_losses(real, self.predict(real), cfg.real_lpips_weight,
                                            cfg.real_pixel_weight)
            terms.update({f"real_{n}": t for n, t in real_terms.items()})
            loss = loss + sum(t.mean() for t in real_terms.values())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step_index += 1
        self.seconds += time.perf_counter() - start
        return {name: float(t.detach().mean()) for name, t in terms.items()}

    @torch.no_grad()
    def evaluate(self, count: int = LATENT_EVAL_SAMPLES,
                 encoder: StyleEncoder | None = None) -> dict[str, float]:
        """Validation of ``encoder`` (default: the training one) in eval mode (BatchNorm's
        running statistics): on fixed generator samples (seed ``EVAL_SEED``, no mixing), the
        latent loss and the pixel L2 of G(predicted W+); with ``val_images``, also the LPIPS
        and pixel L2 of G(predicted W+) against those held-out real inputs, the images an
        encoder is for (generator samples cannot show how it does on those)."""
        encoder = encoder or self.encoder
        was_training = encoder.training
        encoder.eval()
        try:
            images, ws = sample_targets(self.G, count, torch.Generator().manual_seed(EVAL_SEED),
                                        0.0, self.device)
            pred = self.predict(images, encoder)
            synth = self.G.synthesis(pred, noise_mode="const")
            out = {"val_latent": float(latent_loss(pred, ws, self.w_var).mean()),
                   "val_pixel": float((synth - images).square().mean())}
            if self.val_images is not None:
                out.update(self._real_validation(encoder))
            return out
        finally:
            encoder.train(was_training)

    def _real_validation(self, encoder: StyleEncoder, chunk: int = 16) -> dict[str, float]:
        lpips, pixel = [], []
        for images in self.val_images.split(chunk):
            images = images.to(self.device)
            synth = self.G.synthesis(self.predict(images, encoder), noise_mode="const")
            lpips.append(self.lpips(synth, images).flatten())
            pixel.append((synth - images).square().mean((1, 2, 3)))
        return {"val_real_lpips": float(torch.cat(lpips).mean()),
                "val_real_pixel": float(torch.cat(pixel).mean())}


def real_image_loader(paths: list, resolution: int, device: torch.device | str = "cpu"):
    """``indices -> [k, 3, R, R]``: the images of ``paths`` (aligned faces, any size) read on
    demand and resized to the generator's resolution (area when shrinking)."""
    from drfhq_lib.data.images import load_image, pil_to_tensor

    def load(indices: list[int]) -> torch.Tensor:
        return torch.cat([resize(pil_to_tensor(load_image(paths[i])), resolution)
                          for i in indices]).to(device)
    return load
