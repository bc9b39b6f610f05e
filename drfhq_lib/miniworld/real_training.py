"""G_real_mini: the mini world's stand-in for StyleGAN2-ADA FFHQ, trained on P-style renders.

A GAN trained from scratch on two CPU cores does not converge in hours, but the mini world's
images are a function of known parameters: identity i is rendered from z_i (its identity vector),
so the generator can first be *regressed* onto the renders (supervised warm start: G(z_i) ≈ P_i
under a pixel + edge L1), then sharpened by a short adversarial phase that also trains the
discriminator the fine-tuning starts from. Both phases use the project's own StyleGAN2 G and D
(official architecture), so ``drfhq finetune`` treats the result like ``ffhq.pkl``.

Phases (``RealMiniConfig``): ``warm_kimg`` thousand images of regression with constant noise,
then ``adv_kimg`` of non-saturating GAN loss + R1, with the regression kept as an anchor
(``adv_rec_weight``) so the paired identities stay where the warm start put them.

``regressed_copy`` applies the same regression to a copy of a trained generator with the
fine-tune's frozen parts kept (a paired-supervision oracle for G_rendering, not the paper's
unpaired fine-tune).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from drfhq_lib.finetune.trainer import is_frozen
from drfhq_lib.nets import Discriminator, Generator

SOBEL = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 4


@dataclass
class RealMiniConfig:
    resolution: int = 64
    z_dim: int = 32
    w_dim: int = 256
    mapping_layers: int = 4
    mapping_lr_multiplier: float = 0.1  # regression needs a mapping that learns (official 0.01)
    channel_base: int = 2048
    channel_max: int = 128
    batch: int = 16
    warm_kimg: float = 32.0
    adv_kimg: float = 4.0
    lr: float = 2e-3
    adv_lr: float = 1e-3
    r1_gamma: float = 0.5
    d_reg_interval: int = 16
    adv_rec_weight: float = 10.0
    ema_kimg: float = 1.0
    seed: int = 0

    @property
    def total_kimg(self) -> float:
        return self.warm_kimg + self.adv_kimg

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def build_networks(cfg: RealMiniConfig) -> tuple[Generator, Discriminator]:
    torch.manual_seed(cfg.seed)
    G = Generator(z_dim=cfg.z_dim, w_dim=cfg.w_dim, img_resolution=cfg.resolution,
                  channel_base=cfg.channel_base, channel_max=cfg.channel_max,
                  num_layers=cfg.mapping_layers, lr_multiplier=cfg.mapping_lr_multiplier)
    D = Discriminator(img_resolution=cfg.resolution, channel_base=cfg.channel_base,
                      channel_max=cfg.channel_max)
    return G, D


def edges(images: torch.Tensor) -> torch.Tensor:
    """Horizontal and vertical Sobel responses per channel, [N, 2C, H, W]."""
    c = images.shape[1]
    kernel = torch.stack([SOBEL, SOBEL.T]).to(images).unsqueeze(1).repeat(c, 1, 1, 1)
    return F.conv2d(F.pad(images, (1, 1, 1, 1), mode="replicate"), kernel, groups=c)


def reconstruction_loss(fake: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 at full and half resolution plus L1 of the edges (a cheap stand-in for LPIPS, whose
    VGG costs more than the generator on a CPU); a scalar, averaged over the batch."""
    half = F.l1_loss(F.avg_pool2d(fake, 2), F.avg_pool2d(target, 2))
    return F.l1_loss(fake, target) + half + 2.0 * F.l1_loss(edges(fake), edges(target))


def r1_penalty(D, real: torch.Tensor) -> torch.Tensor:
    """||∇_x D(x)||² per image, [N]."""
    real = real.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(D(real).sum(), real, create_graph=True)
    return grad.square().flatten(1).sum(1)


class RealMiniTrainer:
    """The two phases as a resumable loop over a paired set (z [N, z_dim], P images [N, 3, S, S])."""

    def __init__(self, cfg: RealMiniConfig, z: torch.Tensor, images: torch.Tensor,
                 device="cpu"):
        assert z.shape[0] == images.shape[0] and z.shape[1] == cfg.z_dim, (z.shape, images.shape)
        assert images.shape[-1] == cfg.resolution, images.shape
        self.cfg, self.device = cfg, torch.device(device)
        self.z, self.images = z.to(self.device), images.to(self.device)
        self.G, self.D = (n.to(self.device) for n in build_networks(cfg))
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=cfg.lr, betas=(0.9, 0.99))
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=cfg.adv_lr, betas=(0.0, 0.99))
        self.images_seen = 0
        self.seconds = 0.0
        self.log: list[dict] = []
        self.rng = torch.Generator().manual_seed(cfg.seed)

    # ---------------------------------------------------------------- state
    def state(self) -> dict:
        return {"images_seen": self.images_seen, "seconds": self.seconds, "log": self.log,
                "opt_G": self.opt_G.state_dict(), "opt_D": self.opt_D.state_dict(),
                "rng": self.rng.get_state()}

    def load_state(self, nets: dict, state: dict) -> None:
        for name in ("G", "G_ema", "D"):
            getattr(self, name).load_state_dict(nets[name].state_dict())
        self.opt_G.load_state_dict(state["opt_G"])
        self.opt_D.load_state_dict(state["opt_D"])
        self.images_seen, self.seconds = int(state["images_seen"]), float(state["seconds"])
        self.log = list(state["log"])
        self.rng.set_state(state["rng"])

    @property
    def kimg(self) -> float:
        return self.images_seen / 1000

    @property
    def phase(self) -> str:
        return "warm" if self.kimg < self.cfg.warm_kimg else "adversarial"

    @property
    def done(self) -> bool:
        return self.kimg >= self.cfg.total_kimg

    # ---------------------------------------------------------------- steps
    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(len(self.z), (self.cfg.batch,), generator=self.rng).to(self.device)
        return self.z[idx], self.images[idx]

    def _warm_step(self) -> dict:
        z, target = self._batch()
        loss = reconstruction_loss(self.G(z, noise_mode="const"), target)
        self.opt_G.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_G.step()
        return {"rec": loss.item()}

    def _adversarial_step(self, step: int) -> dict:
        cfg = self.cfg
        z, target = self._batch()
        z_free = torch.randn(cfg.batch, cfg.z_dim, generator=self.rng).to(self.device)
        # D: non-saturating logistic loss, lazy R1 as StyleGAN2.
        self.D.requires_grad_(True)
        with torch.no_grad():
            fake = self.G(z_free)
        loss_D = F.softplus(self.D(fake)).mean() + F.softplus(-self.D(target)).mean()
        if step % cfg.d_reg_interval == 0:
            loss_D = loss_D + (cfg.r1_gamma / 2) * r1_penalty(self.D, target).mean() \
                * cfg.d_reg_interval
        self.opt_D.zero_grad(set_to_none=True)
        loss_D.backward()
        self.opt_D.step()
        # G: fool D on free latents, stay on the paired renders.
        self.D.requires_grad_(False)
        adv = F.softplus(-self.D(self.G(z_free))).mean()
        rec = reconstruction_loss(self.G(z), target)
        loss_G = adv + cfg.adv_rec_weight * rec
        self.opt_G.zero_grad(set_to_none=True)
        loss_G.backward()
        self.opt_G.step()
        return {"D": loss_D.item(), "G_adv": adv.item(), "rec": rec.item()}

    def _update_ema(self) -> None:
        beta = 0.5 ** (self.cfg.batch / max(self.cfg.ema_kimg * 1000, 1e-8))
        if self.images_seen < 2000:  # ramp-up: the early weights are not worth remembering
            beta = min(beta, self.images_seen / (self.images_seen + 10 * self.cfg.batch))
        with torch.no_grad():
            for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters()):
                p_ema.copy_(p.lerp(p_ema, beta))
            for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
                b_ema.copy_(b)

    def step(self) -> dict:
        """One batch of the current phase; returns the logged losses."""
        start = time.perf_counter()
        step = self.images_seen // self.cfg.batch
        if self.phase == "warm":
            losses = self._warm_step()
        else:
            if self.opt_G.param_groups[0]["lr"] != self.cfg.adv_lr:
                for group in self.opt_G.param_groups:
                    group["lr"], group["betas"] = self.cfg.adv_lr, (0.0, 0.99)
            losses = self._adversarial_step(step)
        self.images_seen += self.cfg.batch
        self._update_ema()
        self.seconds += time.perf_counter() - start
        if step % 25 == 0:
            self.log.append({"kimg": round(self.kimg, 3), "phase": self.phase,
                             "seconds": round(self.seconds, 1), **losses})
        if not all(math.isfinite(v) for v in losses.values()):
            raise FloatingPointError(f"loss became {losses} at {self.kimg:.2f} kimg")
        return losses


def regressed_copy(G: torch.nn.Module, z: torch.Tensor, targets: torch.Tensor, kimg: float,
                   batch: int = 16, lr: float = 1e-3, seed: int = 0,
                   progress: bool = True) -> torch.nn.Module:
    """A copy of ``G`` whose synthesis is regressed so that G(z_i) ≈ targets_i (z [N, z_dim],
    targets [N, 3, S, S] in [-1, 1]) for ``kimg`` thousand images, with the mapping and the
    ToRGB layers frozen as the paper's fine-tune freezes them, so w stays the same latent in
    both generators. Constant noise, Adam, ``reconstruction_loss``; returns it in eval mode."""
    from tqdm.auto import tqdm

    assert z.shape[0] == targets.shape[0], (z.shape, targets.shape)
    assert targets.shape[-1] == G.img_resolution, (targets.shape, G.img_resolution)
    G_copy = copy.deepcopy(G).float().train()
    for name, p in G_copy.named_parameters():
        p.requires_grad_(not is_frozen(name))
    opt = torch.optim.Adam([p for p in G_copy.parameters() if p.requires_grad], lr=lr,
                           betas=(0.9, 0.99))
    rng = torch.Generator().manual_seed(seed)
    steps = max(1, round(kimg * 1000 / batch))
    with tqdm(range(steps), desc="regressing", unit="batch", disable=not progress) as bar:
        for _ in bar:
            idx = torch.randint(len(z), (batch,), generator=rng).to(z.device)
            loss = reconstruction_loss(G_copy(z[idx], noise_mode="const"), targets[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            bar.set_postfix(rec=f"{loss.item():.4f}")
    return G_copy.eval().requires_grad_(False)
