"""Latent explorer: one W+ code through G_real, G_rendering and a per-layer blend of the two.

The shared W+ space (Sec. 3, Fig. 2) is what makes the method work: the mapping network is
frozen while G_rendering is fine-tuned, so one latent means one identity in both generators and
only the style differs. This module lets a user look at that directly.

Pure functions first:

* **Blending** (``BlendedGenerator``): a third generator whose synthesis weights are
  ``lerp(G_real, G_rendering, t)`` with one factor ``t`` per group of synthesis blocks.
  Groups follow the StyleGAN convention by block resolution (``block_groups``):

  ====================  =========  ===========  ============
  network               coarse     middle       fine
  ====================  =========  ===========  ============
  64 px and up          4-8 px     16-32 px     64 px and up
  32 px                 4 px       8-16 px      32 px
  16 px                 4 px       8 px         16 px
  8 px / 4 px           4 px       (none)       8 px / none
  ====================  =========  ===========  ============

  Networks below 64 px have too few blocks for the fixed bounds, so their first block is
  coarse, their last fine and the blocks between middle. Every parameter and floating-point
  buffer of a block (const, conv0, conv1, torgb, noise maps) follows its block's factor; the
  mapping network is G_real's, shared and frozen. A slider move writes ``torch.lerp`` into the
  third generator's tensors in place (no copy of a network per move), and only for the groups
  whose factor changed. ``lerp`` is exact at its ends, so blend 0 is G_real bit for bit and
  blend 1 is G_rendering bit for bit.
* **Latents**: seed -> z -> w (``nets.latents.z_from_seeds``) with truncation psi,
  style mixing (``ws[:, k:]`` from a second latent), and a projected portrait's W+ from the
  ``.npz`` that ``projection.save_latent`` writes (``drfhq enhance`` -> ``OUT/latents``;
  read by ``drfhq_lib.infer.latent_files``).
* **Preview** (``render_preview``): the 'skip' generator adds each block's ToRGB output to the
  upsampled image of the previous blocks, so stopping after the block of resolution ``r``
  gives an ``r x r`` image of the same face (without the detail the later blocks add). Cost
  grows with the last block run, so a 128 px preview of a 1024 px network is fast on a CPU;
  ``preview_seconds`` measures it (see notebook 05 for the numbers on this machine).

Compute only: the ipywidgets sliders are ``drfhq_lib.apps.explorer.LatentExplorer``; latent and
input files are read by ``drfhq_lib.infer.latent_files``; Fig. 2's table and figure are
``drfhq_lib.eval.shared_latent`` and ``drfhq_lib.eval.shared_latent_figure``.
"""

from __future__ import annotations

import copy
import statistics
import time
from typing import Iterable, Sequence

import torch

from drfhq_lib.errors import DrfhqError
from drfhq_lib.nets.latents import z_from_seeds

GROUPS = ("coarse", "middle", "fine")

#: Block resolutions of the StyleGAN convention: coarse up to 8 px, middle up to 32 px.
COARSE_MAX, MIDDLE_MAX = 8, 32

#: Official StyleGAN2-ADA FFHQ 1024 widths, for timing a preview of the full-size network.
FULL_WIDTHS = dict(channel_base=32768, channel_max=512)


def block_groups(block_resolutions: Sequence[int]) -> dict[str, list[int]]:
    """``{group: [block resolutions]}``: each synthesis block in exactly one group."""
    blocks = sorted(block_resolutions)
    if blocks[-1] >= 64:
        return {"coarse": [r for r in blocks if r <= COARSE_MAX],
                "middle": [r for r in blocks if COARSE_MAX < r <= MIDDLE_MAX],
                "fine": [r for r in blocks if r > MIDDLE_MAX]}
    # Too few blocks for the fixed bounds: first block coarse, last fine, the rest middle.
    return {"coarse": blocks[:1], "middle": blocks[1:-1], "fine": blocks[1:][-1:]}


def group_labels(block_resolutions: Sequence[int]) -> dict[str, str]:
    """``{group: "coarse (4-8 px)"}`` for figure labels."""
    labels = {}
    for group, res in block_groups(block_resolutions).items():
        span = "none" if not res else f"{res[0]} px" if len(res) == 1 else f"{res[0]}-{res[-1]} px"
        labels[group] = f"{group} ({span})"
    return labels


def group_tensor_names(G) -> dict[str, list[str]]:
    """``{group: [names in G.synthesis.state_dict()]}`` of the floating-point tensors each
    group's factor blends (parameters and buffers of the group's blocks)."""
    groups = block_groups(G.synthesis.block_resolutions)
    block_of = {f"b{res}": group for group, resolutions in groups.items() for res in resolutions}
    names: dict[str, list[str]] = {group: [] for group in GROUPS}
    for name, tensor in G.synthesis.state_dict().items():
        if tensor.is_floating_point():
            names[block_of[name.split(".", 1)[0]]].append(name)
    return names


def architecture_difference(G_a, G_b) -> str:
    """'' when both synthesis networks have the same tensors (names, shapes), else what differs."""
    a, b = G_a.synthesis.state_dict(), G_b.synthesis.state_dict()
    if a.keys() != b.keys():
        only = sorted(set(a) ^ set(b))
        return f"{len(only)} tensors present in only one of them (e.g. {only[0]})"
    for name in a:
        if a[name].shape != b[name].shape:
            return f"{name} is {tuple(a[name].shape)} vs {tuple(b[name].shape)}"
    if G_a.num_ws != G_b.num_ws or G_a.w_dim != G_b.w_dim:
        return f"W+ is {G_a.num_ws}x{G_a.w_dim} vs {G_b.num_ws}x{G_b.w_dim}"
    return ""


class BlendedGenerator:
    """A third generator ``G`` whose synthesis is ``lerp(G_real, G_rendering, t_group)``.

    ``G`` is built once (one copy of G_real's synthesis; G_real's mapping module is shared);
    ``set_blend`` then only writes into its tensors. ``G_real`` and ``G_rendering`` are never
    modified.
    """

    def __init__(self, G_real, G_rendering):
        difference = architecture_difference(G_real, G_rendering)
        if difference:
            raise DrfhqError(
                f"G_real and G_rendering have different architectures ({difference}); "
                "blending needs a G_rendering fine-tuned from this G_real (same resolution "
                "and widths): pass the matching pair")
        self.G_real, self.G_rendering = G_real, G_rendering
        # One copy of the synthesis; the memo makes the copy reuse G_real's mapping module.
        self.G = copy.deepcopy(G_real, memo={id(G_real.mapping): G_real.mapping})
        self.G.eval()
        self.G.synthesis.requires_grad_(False)
        real, rendering = G_real.synthesis.state_dict(), G_rendering.synthesis.state_dict()
        mixed = self.G.synthesis.state_dict(keep_vars=True)
        self._pairs = {group: [(mixed[n].data, real[n], rendering[n].to(real[n].device))
                               for n in names]
                       for group, names in group_tensor_names(G_real).items()}
        self.factors = {group: 0.0 for group in GROUPS}

    @torch.no_grad()
    def set_blend(self, **factors: float) -> dict[str, float]:
        """Set any of ``coarse``, ``middle``, ``fine`` in [0, 1] (0: G_real, 1: G_rendering);
        returns all factors. Groups whose factor is unchanged are not rewritten."""
        for group, t in factors.items():
            if group not in GROUPS:
                raise ValueError(f"unknown layer group {group!r}; use {', '.join(GROUPS)}")
            t = float(t)
            if not 0.0 <= t <= 1.0:
                raise ValueError(f"blend factor of {group} must be in [0, 1], got {t}")
            if t == self.factors[group]:
                continue
            for target, a, b in self._pairs[group]:
                torch.lerp(a, b, t, out=target)
            self.factors[group] = t
        return dict(self.factors)


@torch.no_grad()
def seed_latent(G, seed: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Untruncated W+ ``[1, num_ws, w_dim]`` of ``seed`` (z drawn as the official scripts do)."""
    if G.c_dim:
        raise DrfhqError(f"this generator is conditional (c_dim={G.c_dim}); the explorer "
                         "supports the unconditional FFHQ generators only")
    z = z_from_seeds([seed], G.z_dim, device)
    return G.mapping(z, None)


def truncate(ws: torch.Tensor, w_avg: torch.Tensor, psi: float) -> torch.Tensor:
    """``w_avg + psi (w - w_avg)`` on every layer, as the mapping network's truncation."""
    return ws if psi == 1 else w_avg.to(ws.device).lerp(ws, psi)


def style_mix(ws: torch.Tensor, ws_other: torch.Tensor, crossover: int) -> torch.Tensor:
    """``ws`` with layers ``crossover:`` taken from ``ws_other`` (crossover = num_ws: no mix)."""
    if not 0 <= crossover <= ws.shape[1]:
        raise ValueError(f"crossover must be in [0, {ws.shape[1]}], got {crossover}")
    mixed = ws.clone()
    mixed[:, crossover:] = ws_other[:, crossover:]
    return mixed


@torch.no_grad()
def explorer_latent(G, seed: int, psi: float = 1.0, mix_seed: int | None = None,
                    crossover: int | None = None, projected: torch.Tensor | None = None,
                    device: torch.device | str = "cpu") -> torch.Tensor:
    """The explorer's W+: a projected latent (else seed's), truncated by ``psi`` and mixed
    from ``crossover`` on with ``mix_seed``'s (truncated the same way)."""
    w_avg = G.mapping.w_avg
    base = projected.to(device) if projected is not None else seed_latent(G, seed, device)
    ws = truncate(base, w_avg, psi)
    if mix_seed is not None and crossover is not None and crossover < G.num_ws:
        ws = style_mix(ws, truncate(seed_latent(G, mix_seed, device), w_avg, psi), crossover)
    return ws


def preview_resolutions(G) -> list[int]:
    """Resolutions ``render_preview`` can stop at: the synthesis blocks' (8 px and up)."""
    return [r for r in G.synthesis.block_resolutions if r >= 8] or [G.img_resolution]


def default_preview(G, device: torch.device | str = "cpu") -> int:
    """256 px on a GPU, 32 px on a CPU, at most the network's resolution. Measured on two idle
    CPU cores with the full-width 1024 px network, one slider move (three panels): 0.5 s for a
    seed and 0.2 s for a blend at 32 px, 1.1 s and 0.4 s at 64 px (notebook 05 records more)."""
    limit = 256 if torch.device(device).type == "cuda" else 32
    return max([r for r in preview_resolutions(G) if r <= limit] or preview_resolutions(G)[:1])


@torch.no_grad()
def render_preview(G, ws: torch.Tensor, resolution: int | None = None,
                   noise_mode: str = "const") -> torch.Tensor:
    """``[N, 3, r, r]``: the synthesis blocks up to ``resolution`` (default: all), the image
    accumulated so far. At the full resolution this is ``G.synthesis(ws, noise_mode)``."""
    synthesis = G.synthesis
    resolution = resolution or synthesis.img_resolution
    if resolution not in synthesis.block_resolutions:
        raise ValueError(f"preview resolution must be one of {synthesis.block_resolutions}, "
                         f"got {resolution}")
    ws = ws.to(torch.float32)
    x = img = None
    w_idx = 0
    for res in synthesis.block_resolutions:
        if res > resolution:
            break
        block = getattr(synthesis, f"b{res}")
        block_ws = ws.narrow(1, w_idx, block.num_conv + block.num_torgb)
        x, img = block(x, img, block_ws, noise_mode=noise_mode)
        w_idx += block.num_conv
    return img


def preview_seconds(G, ws: torch.Tensor, resolution: int, repeats: int = 3) -> float:
    """Median wall time of ``render_preview`` at ``resolution`` (after one warm-up run)."""
    sync = torch.cuda.synchronize if ws.is_cuda else (lambda: None)  # time the work, not launches
    render_preview(G, ws, resolution)
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        render_preview(G, ws, resolution)
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def preview_timings(G, resolutions: Iterable[int], device: torch.device | str = "cpu",
                    repeats: int = 3, seed: int = 0) -> dict[int, float]:
    """``{resolution: seconds}`` of one preview of seed ``seed``'s latent on ``device``."""
    ws = seed_latent(G, seed, device)
    return {int(r): preview_seconds(G, ws, int(r), repeats) for r in resolutions}


def full_size_generator(resolution: int = 1024, device: torch.device | str = "cpu",
                        seed: int = 0):
    """A randomly initialised generator with the official FFHQ 1024 widths: for timing only."""
    from drfhq_lib.nets import Generator

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        G = Generator(img_resolution=resolution, **FULL_WIDTHS)
    return G.eval().requires_grad_(False).to(device)


@torch.no_grad()
def perturbed_copy(G, scale: float = 0.3, seed: int = 0):
    """A stand-in "G_rendering" for tests and offline demos: G's synthesis weights plus
    Gaussian noise of ``scale`` times each tensor's std (mapping shared). Not fine-tuned,
    never a result; it only makes a blend visible where no fine-tuned network exists."""
    copy_ = BlendedGenerator(G, G).G  # one copy of the synthesis, mapping shared
    generator = torch.Generator().manual_seed(seed)
    for param in copy_.synthesis.parameters():
        if param.numel() > 1:  # scalars (noise strengths) keep their value
            noise = torch.randn(param.shape, generator=generator).to(param.device)
            param.add_(noise * param.std() * scale)
    return copy_


@torch.no_grad()
def blend_sweep(blender: BlendedGenerator, ws: torch.Tensor, values: Sequence[float],
                resolution: int | None = None) -> dict[str, list[torch.Tensor]]:
    """``{group: [image per value]}``: one group blended at each value, the others at 0
    (G_real). The blender's factors are restored afterwards."""
    saved = dict(blender.factors)
    rows = {}
    try:
        for group in GROUPS:
            row = []
            for t in values:
                blender.set_blend(**{g: (t if g == group else 0.0) for g in GROUPS})
                row.append(render_preview(blender.G, ws, resolution)[0].cpu())
            rows[group] = row
    finally:
        blender.set_blend(**saved)
    return rows


@torch.no_grad()
def shared_latent_images(G_real, G_rendering, ws: torch.Tensor, resolution: int | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """The same W+ through both generators (constant noise): ``(real, rendering)`` on the CPU."""
    if not len(ws):
        side = resolution or G_real.img_resolution
        empty = torch.zeros(0, G_real.img_channels, side, side)
        return empty, empty.clone()
    return (render_preview(G_real, ws, resolution).cpu(),
            render_preview(G_rendering, ws, resolution).cpu())


def seed_latents(G, seeds: Sequence[int], psi: float = 1.0,
                 device: torch.device | str = "cpu") -> torch.Tensor:
    """``[len(seeds), num_ws, w_dim]``: each seed's W+, truncated by ``psi``."""
    return torch.cat([explorer_latent(G, s, psi, device=device) for s in seeds])
