"""Losses of the paper: L_sketch (Eq. 1) and L_color (Eq. 2) of the identity-consistent
fine-tuning (Eq. 3), the noise regularisation L_n of the projector (Eq. 4) and its noise
renormalisation. The StyleGAN2-ADA losses (L_origin of Eq. 3) are in ``finetune/objective.py``.

Reductions. Both identity losses are computed per image and averaged over the batch, as the
StyleGAN2-ADA generator loss is. Within an image:

* L_sketch is the L1 *norm* ``||S(a↓512) - S(b↓512)||_1``, a sum over 3 x 512 x 512 elements.
  Evidence that the paper means a sum: with λs = 5e-6 a mean (at most 2 for tanh outputs) would
  give λs L_sketch <= 1e-5, far too small to change training, yet the ablation (Fig. 10) shows a
  clear effect; as a sum over 786,432 elements, λs L_sketch = 3.9 x (mean |difference|), the
  size of the other terms. ``reduction="mean"`` is available for experiments.
* L_color is LPIPS, already a spatial mean; λc = 3.75e3 scales it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Literal

import torch
import torch.nn as nn

from drfhq_lib.nets.perceptual import LPIPSVGG16, blurred_lpips, resize

LAMBDA_SKETCH = 5e-6  # λs of Eq. 3
LAMBDA_COLOR = 3.75e3  # λc of Eq. 3
LAMBDA_NOISE = 1e5  # λn of Eq. 4
SKETCH_SIZE = 512
COLOR_SIZE = 256
BLUR_SIZE = 13
BLUR_SIGMA = 10.0

SKETCH_SCALE_NOTE = """\
L_sketch with the HED substitute (benchmarks/bench_losses.py --sketch-scale, 512 px): the HED
sketch is 1 - 2p on 3 channels, so its L1 sum counts the same 3 x 512 x 512 elements as DFE's.
Measured per image: photo vs a smoothed, recoloured copy (identity kept, texture changed)
8.5e4 (mean |d| 0.11, λs L 0.43); photo vs a 4 px shift 2.4e5 (λs L 1.2); different faces
2.8e5-4.6e5 (mean |d| 0.36-0.59, λs L 1.4-2.3). So λs = 5e-6 on the sum gives order-one terms
with HED too, the size of the adversarial loss. HED's maps are denser and softer than DFE's line
drawings and respond to texture, so with HED the term also resists the change of rendering
style; λs stays a parameter (compare λs L_sketch with λc L_color in the training log).
"""

Reduction = Literal["sum", "mean"]


def sketch_distance(sketch_net: nn.Module, a: torch.Tensor, b: torch.Tensor,
                    size: int = SKETCH_SIZE, reduction: Reduction = "sum") -> torch.Tensor:
    """||S(a↓size) - S(b↓size)||_1 per image, [N]; images in [-1, 1]."""
    diff = (sketch_net(resize(a, size)) - sketch_net(resize(b, size))).abs()
    return diff.flatten(1).sum(1) if reduction == "sum" else diff.flatten(1).mean(1)


def sketch_loss(sketch_net: nn.Module, real: torch.Tensor, rendering: torch.Tensor,
                size: int = SKETCH_SIZE, reduction: Reduction = "sum") -> torch.Tensor:
    """L_sketch of Eq. 1 averaged over the batch (scalar). ``real`` is G_real(w+), ``rendering``
    G_rendering(w+), both [-1, 1]; S is applied at ``size`` px."""
    return sketch_distance(sketch_net, real, rendering, size, reduction).mean()


def color_loss(lpips_net: LPIPSVGG16, real: torch.Tensor, rendering: torch.Tensor,
               size: int = COLOR_SIZE, blur_size: int = BLUR_SIZE,
               sigma: float = BLUR_SIGMA) -> torch.Tensor:
    """L_color of Eq. 2 averaged over the batch (scalar): LPIPS of blurred 256 px images."""
    return blurred_lpips(lpips_net, real, rendering, size, blur_size, sigma).mean()


@dataclass
class IdentityLosses:
    """λs L_sketch (Eq. 1) + λc L_color (Eq. 2), the one implementation of the sum: the
    fine-tuning objective adds its batch mean to the generator loss (Eq. 3), the guided
    projection of Fig. 11 its per-image values to Eq. 4 (``projection.identity_guide``).

    A term with no network is switched off. ``per_image(real, rendering) -> (sum [N],
    {"sketch": [N], "color": [N]})``; calling the object gives the batch means (scalars).
    ``.resolved`` gathers the networks used, for the provenance of a training run.
    """

    sketch_net: nn.Module | None = None
    lpips_net: nn.Module | None = None
    lambda_sketch: float = LAMBDA_SKETCH
    lambda_color: float = LAMBDA_COLOR
    sketch_size: int = SKETCH_SIZE
    color_size: int = COLOR_SIZE
    blur_size: int = BLUR_SIZE
    blur_sigma: float = BLUR_SIGMA
    sketch_reduction: Reduction = "sum"

    @property
    def enabled(self) -> bool:
        return self.sketch_net is not None or self.lpips_net is not None

    @property
    def resolved(self) -> list:
        nets = [n for n in (self.sketch_net, self.lpips_net) if n is not None]
        return [r for n in nets for r in getattr(n, "resolved", [])]

    def per_image(self, real: torch.Tensor, rendering: torch.Tensor):
        """(weighted sum, terms), each one value per image, [N]."""
        total, terms = rendering.new_zeros(rendering.shape[0]), {}
        if self.sketch_net is not None:
            terms["sketch"] = sketch_distance(self.sketch_net, real, rendering,
                                              self.sketch_size, self.sketch_reduction)
            total = total + self.lambda_sketch * terms["sketch"]
        if self.lpips_net is not None:
            terms["color"] = blurred_lpips(self.lpips_net, real, rendering, self.color_size,
                                           self.blur_size, self.blur_sigma)
            total = total + self.lambda_color * terms["color"]
        return total, terms

    def __call__(self, real: torch.Tensor, rendering: torch.Tensor):
        """(weighted sum, {'sketch': L_sketch, 'color': L_color}) averaged over the batch."""
        total, terms = self.per_image(real, rendering)
        return total.mean(), {k: v.mean() for k, v in terms.items()}


# ----------------------------------------------------------------------------- projector noise

def _batched(noise: torch.Tensor) -> torch.Tensor:
    """``[N, 1, H, W]`` maps stay as they are; one ``[H, W]`` map becomes ``[1, 1, H, W]``."""
    return noise if noise.ndim == 4 else noise.view(1, 1, *noise.shape[-2:])


def noise_regularization(noise_maps: Iterable[torch.Tensor]) -> torch.Tensor:
    """L_n of Eq. 4 (StyleGAN2 projector), one value per image: ``[N, 1, H, W]`` maps -> ``[N]``.

    Squared autocorrelation at lag 1 in x and y of every noise map, repeated on 2x
    average-pooled copies down to 8 px (the 8 px level, or a smaller map's own level, is counted
    once, as in stylegan2-ada-pytorch's projector). Per image, so that a batch of projections
    is the sum of independent ones.
    """
    loss = None
    for noise in noise_maps:
        n = _batched(noise)
        while True:
            term = ((n * torch.roll(n, shifts=1, dims=3)).mean((1, 2, 3)) ** 2
                    + (n * torch.roll(n, shifts=1, dims=2)).mean((1, 2, 3)) ** 2)
            loss = term if loss is None else loss + term
            if n.shape[2] <= 8:
                break
            n = torch.nn.functional.avg_pool2d(n, kernel_size=2)
    if loss is None:
        raise ValueError("noise_regularization needs at least one noise map")
    return loss


@torch.no_grad()
def normalize_noise_(noise_maps: Iterable[torch.Tensor]) -> None:
    """Renormalise each image's noise map in place to zero mean and unit standard deviation
    (done after every projector step so the optimiser cannot hide signal in the noise scale)."""
    for noise in noise_maps:
        n = _batched(noise)
        n.sub_(n.mean((1, 2, 3), keepdim=True))
        n.mul_(n.square().mean((1, 2, 3), keepdim=True).rsqrt())  # population std, as official


# L_origin of Eq. 3 (non-saturating logistic loss, R1, path length regularisation) lives in
# finetune/objective.py, which adds sketch_loss and color_loss to its generator term.
