"""The fine-tuning objective: StyleGAN2-ADA's ``StyleGAN2Loss`` (L_origin of Eq. 3) plus the
identity terms λs L_sketch + λc L_color added to the generator's main phase.

Four phases, each a function that accumulates gradients (``gain`` multiplies the loss, as the
official ``accumulate_gradients``: it is the phase's interval for the lazy regularisers):

* ``Gmain``  non-saturating logistic loss softplus(-D(aug(G(z)))) + λs L_sketch + λc L_color;
* ``Greg``   path-length regularisation on a batch shrunk by ``pl_batch_shrink``;
* ``Dmain``  softplus(D(aug(G(z)))) + softplus(-D(aug(x)));
* ``Dreg``   R1: gamma/2 * |grad_x D(aug(x))|^2 on reals.

Differences from the official loss, all forced by the paper's constraints:

* The mapping network is frozen: ``ws`` are computed without a graph and without updating
  ``w_avg`` (``update_emas=False``); the path-length phase differentiates with respect to a
  leaf copy of ``ws`` (the official ws carry the mapping's graph; the gradient asked for is the
  same).
* The identity terms compare G_rendering(w+) with G_real(w+) for the same style-mixed ``w+`` of
  the Gmain phase *and the same noise draw*: G_rendering renders random noise as in every
  official phase, and G_real (without gradients) replays that draw (:func:`same_noise`). With
  G_real on its constant noise instead, the terms would penalise every difference of
  stochastic texture (L_sketch is a sum over the sketch map's pixels), which pulls G_rendering
  toward smooth skin: at the first step of a fine-tune, where G_rendering is G_real, the
  constant-noise reference gives non-zero terms, the shared draw gives exactly zero
  (``benchmarks/bench_noise_policy.py`` measures both).
* With several processes the path-length mean is averaged over them before ``pl_mean`` moves,
  so every process keeps the same ``pl_mean`` (the official one lets them drift apart).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from drfhq_lib.finetune import losses
from drfhq_lib.finetune import distributed


def _rng_state(device: torch.device) -> tuple:
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


@contextlib.contextmanager
def same_noise(state: tuple, device: torch.device):
    """Inside the block, random draws on ``device`` repeat those made after ``state`` was
    taken (:func:`_rng_state`); afterwards the generator continues as if the block never ran.
    Two generators of one architecture thus render the same noise maps."""
    cpu, cuda = state
    with torch.random.fork_rng(devices=[device] if cuda is not None else []):
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state(cuda, device)
        yield


@dataclass
class StyleGAN2Objective:
    G: nn.Module  # G_rendering, being trained
    D: nn.Module
    G_real: nn.Module  # frozen reference for the identity terms
    augment: nn.Module | None = None  # applied to every image D sees
    identity: losses.IdentityLosses = field(default_factory=losses.IdentityLosses)
    r1_gamma: float = 10.0
    pl_weight: float = 2.0
    pl_decay: float = 0.01
    pl_batch_shrink: int = 2
    style_mixing: float = 0.9
    pl_mean: torch.Tensor | None = None
    real_signs: list = field(default_factory=list)  # D(real) logits of this step, for ADA

    def __post_init__(self):
        if self.pl_mean is None:
            self.pl_mean = torch.zeros([], device=next(self.G.parameters()).device)

    # ------------------------------------------------------------------------- forward passes

    @torch.no_grad()
    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        """ws with style mixing: from a random cutoff layer on, ws of a second z (official)."""
        ws = self.G.mapping(z, None, update_emas=False)
        if self.style_mixing > 0:
            num_ws = ws.shape[1]
            cutoff = torch.empty([], dtype=torch.int64, device=ws.device).random_(1, num_ws)
            mix = torch.rand([], device=ws.device) < self.style_mixing
            cutoff = torch.where(mix, cutoff, torch.full_like(cutoff, num_ws))
            ws[:, cutoff:] = self.G.mapping(torch.randn_like(z), None,
                                            update_emas=False)[:, cutoff:]
        return ws

    def run_D(self, images: torch.Tensor) -> torch.Tensor:
        if self.augment is not None:
            images = self.augment(images)
        return self.D(images, None)

    # ------------------------------------------------------------------------- phases

    def gen_main(self, z: torch.Tensor, gain: float) -> dict:
        ws = self.mapping(z)
        noise_state = _rng_state(ws.device)
        images = self.G.synthesis(ws, noise_mode="random")
        logits = self.run_D(images)
        loss_adv = F.softplus(-logits).mean()
        stats = {"G_adv": loss_adv.detach(), "scores_fake": logits.detach().mean()}
        loss = loss_adv
        if self.identity.enabled:
            with torch.no_grad(), same_noise(noise_state, ws.device):
                reference = self.G_real.synthesis(ws, noise_mode="random")
            weighted, terms = self.identity(reference, images)
            loss = loss + weighted
            stats.update({k: v.detach() for k, v in terms.items()})
        stats["G_total"] = loss.detach()
        loss.mul(gain).backward()
        return stats

    def gen_reg(self, z: torch.Tensor, gain: float) -> dict:
        batch = max(z.shape[0] // self.pl_batch_shrink, 1)
        ws = self.mapping(z[:batch]).detach().requires_grad_(True)
        images = self.G.synthesis(ws, noise_mode="random")
        noise = torch.randn_like(images) / math.sqrt(images.shape[2] * images.shape[3])
        (grads,) = torch.autograd.grad(outputs=[(images * noise).sum()], inputs=[ws],
                                       create_graph=True, only_inputs=True)
        lengths = grads.square().sum(2).mean(1).sqrt()
        batch_mean = distributed.all_mean(lengths.mean().detach().clone())
        pl_mean = self.pl_mean.lerp(batch_mean, self.pl_decay)
        self.pl_mean.copy_(pl_mean)
        penalty = (lengths - pl_mean).square()
        (images[:, 0, 0, 0] * 0 + penalty * self.pl_weight).mean().mul(gain).backward()
        return {"pl_penalty": penalty.detach().mean(), "pl_mean": pl_mean.detach()}

    def disc_main(self, real: torch.Tensor, z: torch.Tensor, gain: float) -> dict:
        with torch.no_grad():
            fakes = self.G.synthesis(self.mapping(z), noise_mode="random")
        fake_logits = self.run_D(fakes)
        F.softplus(fake_logits).mean().mul(gain).backward()
        real_logits = self.run_D(real.detach())
        self.real_signs.append(real_logits.detach().sign().flatten())
        loss_real = F.softplus(-real_logits)
        (real_logits * 0 + loss_real).mean().mul(gain).backward()
        loss = F.softplus(fake_logits).mean() + loss_real.mean()
        return {"D_loss": loss.detach(), "scores_fake": fake_logits.detach().mean(),
                "scores_real": real_logits.detach().mean()}

    def disc_reg(self, real: torch.Tensor, gain: float) -> dict:
        real = real.detach().requires_grad_(True)
        logits = self.run_D(real)
        self.real_signs.append(logits.detach().sign().flatten())
        (grads,) = torch.autograd.grad(outputs=[logits.sum()], inputs=[real], create_graph=True,
                                       only_inputs=True)
        penalty = grads.square().sum([1, 2, 3])
        (logits * 0 + penalty * (self.r1_gamma / 2)).mean().mul(gain).backward()
        return {"r1_penalty": penalty.detach().mean()}
