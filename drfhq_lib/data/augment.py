"""Adaptive discriminator augmentation (ADA), as in the official StyleGAN2-ADA training.

The paper fine-tunes StyleGAN2-ADA FFHQ on a few thousand rendered faces with the official
training recipe, whose discriminator sees every image (real and generated) through the 'bgc'
augmentation pipeline, applied with a probability ``p`` that a controller adapts so that the
discriminator cannot memorise the small training set. This module reproduces both parts:

* :class:`AugmentPipe` -- the pipeline. Geometric transforms are composed into one 3x3 matrix per
  image and applied once (reflect padding, 2x upsampling with the sym6 wavelet low-pass filter,
  bilinear ``grid_sample``, filtered 2x downsampling) so that the chain of transforms costs one
  resampling and D sees little aliasing. Colour transforms are composed into one 4x4
  matrix per image. Parameters, probabilities and sampling formulas follow the official code, and
  random numbers are drawn in the same order from torch's RNG on the images' device.
* :class:`AdaController` -- the heuristic that moves ``p`` from the sign of D on real images.

Everything is differentiable with respect to the images, to any order: G is trained through the
pipeline and the R1 penalty differentiates D(augment(reals)) with ``create_graph=True``.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from drfhq_lib.errors import DrfhqError

# Low-pass filter of the Symlet-6 wavelet. Being an orthogonal wavelet filter, upsampling with it
# and then downsampling with it is the identity, so at p = 0 the pipeline returns its input.
SYM6 = (
    0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633,
    0.4910559419267466, 0.787641141030194, 0.3379294217276218, -0.07263752278646252,
    -0.021060292512300564, 0.04472490177066578, 0.0017677118642428036, -0.007800708325034148,
)

GEOMETRIC = ("xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac")
COLOUR = ("brightness", "contrast", "lumaflip", "hue", "saturation")

# Magnitudes of the transforms; the official defaults, which 'bgc' uses unchanged.
MAGNITUDES = {
    "xint_max": 0.125,        # integer translation range, relative to image size
    "scale_std": 0.2,         # log2 std of isotropic scaling
    "rotate_max": 1.0,        # rotation range, 1 = full circle
    "aniso_std": 0.2,         # log2 std of anisotropic scaling
    "xfrac_std": 0.125,       # std of fractional translation, relative to image size
    "brightness_std": 0.2,    # std of the brightness offset
    "contrast_std": 0.5,      # log2 std of contrast
    "hue_max": 1.0,           # hue rotation range, 1 = full circle
    "saturation_std": 1.0,    # log2 std of saturation
}

# The augpipe specs of the official train.py that contain only the transforms implemented here.
PRESETS = {
    "blit": dict.fromkeys(("xflip", "rotate90", "xint"), 1.0),
    "geom": dict.fromkeys(("scale", "rotate", "aniso", "xfrac"), 1.0),
    "color": dict.fromkeys(COLOUR, 1.0),
    "bg": dict.fromkeys(GEOMETRIC, 1.0),
    "bgc": dict.fromkeys(GEOMETRIC + COLOUR, 1.0),
}


# ------------------------------------------------------------------------------------------------
# Homogeneous transformation matrices. Arguments are tensors of shape [N] (one value per image) or
# Python numbers; the result is [N, 3, 3] / [N, 4, 4], or [3, 3] / [4, 4] when all are numbers,
# with the dtype and device of the tensor ``like``.

def _matrix(rows, like: torch.Tensor) -> torch.Tensor:
    """Stack a nested list of numbers/[N] tensors into a batch of matrices shaped like ``like``."""
    tensors = [x for row in rows for x in row if isinstance(x, torch.Tensor)]
    shape = torch.broadcast_shapes(*(x.shape for x in tensors))
    elements = [torch.as_tensor(x, dtype=like.dtype, device=like.device).expand(shape)
                for row in rows for x in row]
    return torch.stack(elements, dim=-1).reshape(*shape, len(rows), len(rows[0]))


def translate2d(tx, ty, like: torch.Tensor) -> torch.Tensor:
    return _matrix([[1, 0, tx], [0, 1, ty], [0, 0, 1]], like)


def scale2d(sx, sy, like: torch.Tensor) -> torch.Tensor:
    return _matrix([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], like)


def rotate2d(theta: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Counter-clockwise rotation by ``theta`` radians (in image coordinates, y pointing down)."""
    c, s = torch.cos(theta), torch.sin(theta)
    return _matrix([[c, -s, 0], [s, c, 0], [0, 0, 1]], like)


def translate3d(tx, ty, tz, like: torch.Tensor) -> torch.Tensor:
    return _matrix([[1, 0, 0, tx], [0, 1, 0, ty], [0, 0, 1, tz], [0, 0, 0, 1]], like)


def scale3d(sx, sy, sz, like: torch.Tensor) -> torch.Tensor:
    return _matrix([[sx, 0, 0, 0], [0, sy, 0, 0], [0, 0, sz, 0], [0, 0, 0, 1]], like)


def rotate3d(axis: torch.Tensor, theta: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Rotation by ``theta`` around the unit vector ``axis`` (Rodrigues' formula)."""
    x, y, z = axis[0], axis[1], axis[2]
    c, s = torch.cos(theta), torch.sin(theta)
    k = 1 - c
    return _matrix([
        [x * x * k + c, x * y * k - z * s, x * z * k + y * s, 0],
        [y * x * k + z * s, y * y * k + c, y * z * k - x * s, 0],
        [z * x * k - y * s, z * y * k + x * s, z * z * k + c, 0],
        [0, 0, 0, 1],
    ], like)


# ------------------------------------------------------------------------------------------------
# Resampling with the sym6 filter; the semantics of the official upsample2d / downsample2d.

def _depthwise(taps: torch.Tensor, channels: int, vertical: bool) -> torch.Tensor:
    """The same 1D filter for every channel, as a grouped-convolution weight."""
    shape = (channels, 1, taps.numel(), 1) if vertical else (channels, 1, 1, taps.numel())
    return taps.reshape(shape[1:]).expand(shape).contiguous()


def upsample2x(images: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Insert a zero after every pixel and convolve with ``taps`` (gain 2 per axis).

    A stride-2 transposed convolution does exactly that without materialising the zeros; the
    crop of (len(taps) - 2) // 2 per side aligns the result as the official op does. Every image
    channel is its own group (the fastest layout for CPU convolutions with one filter).
    """
    n, c, h, w = images.shape
    x = images.reshape(1, n * c, h, w)
    crop = (taps.numel() - 2) // 2
    x = F.conv_transpose2d(x, _depthwise(2 * taps, n * c, vertical=False), stride=(1, 2),
                           padding=(0, crop), groups=n * c)
    x = F.conv_transpose2d(x, _depthwise(2 * taps, n * c, vertical=True), stride=(2, 1),
                           padding=(crop, 0), groups=n * c)
    return x.reshape(n, c, 2 * h, 2 * w)


def downsample2x(images: torch.Tensor, taps: torch.Tensor, padding: int) -> torch.Tensor:
    """Correlate with ``taps`` (the official ``flip_filter=True``) and keep every second pixel.

    ``padding`` is added to the official downsample2d's default padding of (len(taps) - 1) // 2
    per side (for an even number of taps); negative values crop.
    """
    n, c, h, w = images.shape
    pad = padding + (taps.numel() - 1) // 2
    x = F.pad(images.reshape(1, n * c, h, w), [pad, pad, pad, pad])
    x = F.conv2d(x, _depthwise(taps, n * c, vertical=False), stride=(1, 2), groups=n * c)
    x = F.conv2d(x, _depthwise(taps, n * c, vertical=True), stride=(2, 1), groups=n * c)
    return x.reshape(n, c, x.shape[2], x.shape[3])


# ------------------------------------------------------------------------------------------------

class AugmentPipe(torch.nn.Module):
    """The ADA augmentation pipeline (official ``training/augment.py`` semantics, no imgfilter,
    noise or cutout).

    Every transform has a probability multiplier (``xflip``, ..., ``saturation``; 0 = off,
    1 = applied with probability ``p``) and the magnitudes in :data:`MAGNITUDES`. ``preset``
    switches a set of multipliers on (:data:`PRESETS`; the paper's training uses ``'bgc'``);
    keyword settings override it. ``p`` is a scalar buffer, so it travels with ``state_dict`` and
    ``.to(device)``; :class:`AdaController` adjusts it in place.
    """

    def __init__(self, preset: str | None = None, *, p: float = 0.0, **settings: float):
        super().__init__()
        if preset is not None and preset not in PRESETS:
            raise DrfhqError(f"unknown augmentation preset {preset!r}; "
                             f"choose one of {sorted(PRESETS)}")
        known = set(GEOMETRIC) | set(COLOUR) | set(MAGNITUDES)
        unknown = sorted(set(settings) - known)
        if unknown:
            raise DrfhqError(f"unknown AugmentPipe settings {unknown}; known: {sorted(known)}")
        values = {**dict.fromkeys(GEOMETRIC + COLOUR, 0.0), **MAGNITUDES,
                  **PRESETS.get(preset, {}), **settings}
        for name, value in values.items():
            setattr(self, name, float(value))
        self.register_buffer("p", torch.tensor(float(p)))
        self.register_buffer("sym6", torch.tensor(SYM6) / sum(SYM6), persistent=False)

    @classmethod
    def bgc(cls, p: float = 0.0) -> "AugmentPipe":
        """The pipeline of the paper's (and the official default) training configuration."""
        return cls("bgc", p=p)

    def extra_repr(self) -> str:
        enabled = [name for name in GEOMETRIC + COLOUR if getattr(self, name) > 0]
        return f"p={float(self.p):.4f}, enabled={enabled}"

    # --------------------------------------------------------------------------------------------

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Augment a batch ``[N, C, H, W]`` (C = 3 or 1); each image draws its own transforms."""
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise DrfhqError(f"AugmentPipe expects [N, 3 or 1, H, W] images, "
                             f"got {tuple(images.shape)}")
        n, c, h, w = images.shape
        dtype = torch.promote_types(images.dtype, torch.float32)  # no float16 matrices
        # As in the official pipe, a stage runs whenever one of its transforms is enabled, even
        # when none was drawn: the cost and the RNG stream do not depend on the draws.
        if any(getattr(self, name) > 0 for name in GEOMETRIC):
            g_inv = self.sample_geometry(n, h, w, images.device, dtype)
            images = self.apply_geometry(images, g_inv)
        if any(getattr(self, name) > 0 for name in COLOUR):
            colour = self.sample_colour(n, c, images.device, dtype)
            images = self.apply_colour(images, colour)
        return images

    def _chosen(self, multiplier: float, shape, like: torch.Tensor) -> torch.Tensor:
        """Bool mask: which images get a transform applied with probability ``multiplier * p``."""
        return torch.rand(shape, dtype=like.dtype, device=like.device) < multiplier * self.p

    def _uniform(self, shape, like: torch.Tensor) -> torch.Tensor:
        return torch.rand(shape, dtype=like.dtype, device=like.device)

    def _normal(self, shape, like: torch.Tensor) -> torch.Tensor:
        return torch.randn(shape, dtype=like.dtype, device=like.device)

    def sample_geometry(self, n: int, height: int, width: int, device: torch.device | str = "cpu",
                        dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Draw the geometric transforms: ``[N, 3, 3]`` matrices mapping output pixel coordinates
        (origin at the image centre) to input pixel coordinates, i.e. the *inverse* transforms,
        composed in the official order (each new inverse is multiplied on the right)."""
        like = torch.empty(0, device=device, dtype=dtype)
        g_inv = torch.eye(3, dtype=like.dtype, device=like.device).expand(n, 3, 3)

        if self.xflip > 0:
            flip = torch.floor(self._uniform([n], like) * 2)
            flip = torch.where(self._chosen(self.xflip, [n], like), flip, 0)
            g_inv = g_inv @ scale2d(1 - 2 * flip, 1, like)

        if self.rotate90 > 0:
            quarter = torch.floor(self._uniform([n], like) * 4)
            quarter = torch.where(self._chosen(self.rotate90, [n], like), quarter, 0)
            g_inv = g_inv @ rotate2d(math.pi / 2 * quarter, like)

        if self.xint > 0:
            t = (self._uniform([n, 2], like) * 2 - 1) * self.xint_max
            t = torch.where(self._chosen(self.xint, [n, 1], like), t, 0)
            shift = torch.round(t * t.new_tensor([width, height]))
            g_inv = g_inv @ translate2d(-shift[:, 0], -shift[:, 1], like)

        if self.scale > 0:
            s = torch.exp2(self._normal([n], like) * self.scale_std)
            s = torch.where(self._chosen(self.scale, [n], like), s, 1)
            g_inv = g_inv @ scale2d(1 / s, 1 / s, like)

        # Two independent rotations (before and after the anisotropic scaling), each with the
        # probability that makes P(at least one of them) = rotate * p.
        p_rot = 1 - torch.sqrt((1 - self.rotate * self.p).clamp(0, 1))
        if self.rotate > 0:
            theta = (self._uniform([n], like) * 2 - 1) * math.pi * self.rotate_max
            theta = torch.where(self._uniform([n], like) < p_rot, theta, 0)
            g_inv = g_inv @ rotate2d(theta, like)

        if self.aniso > 0:
            s = torch.exp2(self._normal([n], like) * self.aniso_std)
            s = torch.where(self._chosen(self.aniso, [n], like), s, 1)
            g_inv = g_inv @ scale2d(1 / s, s, like)

        if self.rotate > 0:
            theta = (self._uniform([n], like) * 2 - 1) * math.pi * self.rotate_max
            theta = torch.where(self._uniform([n], like) < p_rot, theta, 0)
            g_inv = g_inv @ rotate2d(theta, like)

        if self.xfrac > 0:
            t = self._normal([n, 2], like) * self.xfrac_std
            t = torch.where(self._chosen(self.xfrac, [n, 1], like), t, 0)
            g_inv = g_inv @ translate2d(-t[:, 0] * width, -t[:, 1] * height, like)

        return g_inv

    def apply_geometry(self, images: torch.Tensor, g_inv: torch.Tensor) -> torch.Tensor:
        """Resample every image through its matrix, once, anti-aliased.

        The batch is reflect-padded just enough for every output corner to sample real content,
        upsampled 2x with sym6, sampled bilinearly, then filtered and downsampled back, as in the
        official pipe. Flips and 90-degree rotations take the same path there, so they are exact
        only up to the filter: sym6 is not linear-phase, and a mirrored image comes out shifted by
        about 0.1 pixel (the identity is exact, up to float rounding).
        """
        n, c, h, w = images.shape
        taps = self.sym6.to(images.dtype)
        filter_pad = taps.numel() // 4  # 3 for sym6

        # Padding: how far beyond the image the transformed output corners reach, plus room for
        # the filter, clamped to what reflect padding can provide.
        cx, cy = (w - 1) / 2, (h - 1) / 2
        corners = torch.tensor([[-cx, -cy, 1], [cx, -cy, 1], [cx, cy, 1], [-cx, cy, 1]],
                               dtype=g_inv.dtype, device=g_inv.device)
        reach = (g_inv @ corners.t())[:, :2, :].permute(1, 0, 2).flatten(1)  # [xy, N * corner]
        margin = torch.cat([-reach, reach]).max(dim=1).values                  # [x0, y0, x1, y1]
        margin = margin + margin.new_tensor([filter_pad * 2 - cx, filter_pad * 2 - cy] * 2)
        margin = torch.minimum(margin.clamp(min=0), margin.new_tensor([w - 1, h - 1] * 2))
        mx0, my0, mx1, my1 = (int(m) for m in margin.ceil().tolist())
        images = F.pad(images, [mx0, mx1, my0, my1], mode="reflect")
        g_inv = translate2d((mx0 - mx1) / 2, (my0 - my1) / 2, g_inv) @ g_inv

        # Work at twice the resolution: centred coordinate x becomes 2x - 0.5 (official convention).
        images = upsample2x(images, taps)
        g_inv = scale2d(2, 2, g_inv) @ g_inv @ scale2d(0.5, 0.5, g_inv)
        g_inv = translate2d(-0.5, -0.5, g_inv) @ g_inv @ translate2d(0.5, 0.5, g_inv)

        # Sample an output that keeps 2 * filter_pad extra (upsampled) pixels per side for the
        # downsampling filter, converting pixel coordinates to grid_sample's [-1, 1] convention.
        out_h, out_w = (h + filter_pad * 2) * 2, (w + filter_pad * 2) * 2
        g_inv = (scale2d(2 / images.shape[3], 2 / images.shape[2], g_inv) @ g_inv
                 @ scale2d(out_w / 2, out_h / 2, g_inv))
        grid = F.affine_grid(g_inv[:, :2, :].to(images.dtype), [n, c, out_h, out_w],
                             align_corners=False)
        images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros",
                               align_corners=False)

        return downsample2x(images, taps, padding=-filter_pad * 2)

    def sample_colour(self, n: int, channels: int, device: torch.device | str = "cpu",
                      dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Draw the colour transforms: ``[N, 4, 4]`` matrices acting on homogeneous RGB vectors,
        composed in the official order (each new transform is multiplied on the left)."""
        like = torch.empty(0, device=device, dtype=dtype)
        eye = torch.eye(4, dtype=like.dtype, device=like.device)
        colour = eye.expand(n, 4, 4)
        luma = like.new_tensor([1, 1, 1, 0]) / math.sqrt(3)  # grey axis
        luma_outer = torch.outer(luma, luma)

        if self.brightness > 0:
            b = self._normal([n], like) * self.brightness_std
            b = torch.where(self._chosen(self.brightness, [n], like), b, 0)
            colour = translate3d(b, b, b, like) @ colour

        if self.contrast > 0:
            k = torch.exp2(self._normal([n], like) * self.contrast_std)
            k = torch.where(self._chosen(self.contrast, [n], like), k, 1)
            colour = scale3d(k, k, k, like) @ colour

        if self.lumaflip > 0:  # Householder reflection of the luma axis: inverts brightness
            flip = torch.floor(self._uniform([n, 1, 1], like) * 2)
            flip = torch.where(self._chosen(self.lumaflip, [n, 1, 1], like), flip, 0)
            colour = (eye - 2 * luma_outer * flip) @ colour

        if self.hue > 0 and channels > 1:  # rotation around the luma axis
            theta = (self._uniform([n], like) * 2 - 1) * math.pi * self.hue_max
            theta = torch.where(self._chosen(self.hue, [n], like), theta, 0)
            colour = rotate3d(luma, theta, like) @ colour

        if self.saturation > 0 and channels > 1:  # scale the components orthogonal to luma
            s = torch.exp2(self._normal([n, 1, 1], like) * self.saturation_std)
            s = torch.where(self._chosen(self.saturation, [n, 1, 1], like), s, 1)
            colour = (luma_outer + (eye - luma_outer) * s) @ colour

        return colour

    @staticmethod
    def apply_colour(images: torch.Tensor, colour: torch.Tensor) -> torch.Tensor:
        """Apply one affine colour matrix per image; a greyscale image uses the mean of the
        matrix's RGB rows applied to (v, v, v), as the official pipe does."""
        n, c, h, w = images.shape
        colour = colour.to(images.dtype)
        pixels = images.reshape(n, c, h * w)
        if c == 3:
            pixels = colour[:, :3, :3] @ pixels + colour[:, :3, 3:]
        else:
            rows = colour[:, :3, :].mean(dim=1, keepdim=True)
            pixels = pixels * rows[:, :, :3].sum(dim=2, keepdim=True) + rows[:, :, 3:]
        return pixels.reshape(n, c, h, w)


# ------------------------------------------------------------------------------------------------

def ada_adjustment(rt: float, target: float, batch_size: int, interval: int, kimg: float) -> float:
    """The official ADA step: p moves by one unit per ``kimg`` thousand real images shown,
    upwards when D is too sure about reals (``rt`` above ``target``), downwards otherwise."""
    sign = (rt > target) - (rt < target)
    return sign * (batch_size * interval) / (kimg * 1000)


class AdaController:
    """Owns the augmentation probability ``p`` of a training run.

    ``mode`` is ``'ada'`` (adaptive, starting at ``p``), ``'fixed'`` (``p`` constant) or
    ``'noaug'`` (``p`` = 0). Per training step the trainer calls :meth:`accumulate` with D's logits
    on the real images it saw, then :meth:`step`; every ``interval`` steps the mean sign of those
    logits, ``rt`` (1 = D is certain every real is real, i.e. overfitting), moves ``p`` by
    :func:`ada_adjustment`, never below 0. ``batch_size`` is the global batch (all processes).

    ``p`` lives in ``pipe.p`` when a pipe is given (so it is saved with the pipe), otherwise in the
    controller. ``all_reduce`` sums the ``[sum of signs, count]`` tensor over processes before each
    adjustment, e.g. ``finetune.distributed.all_sum``; every process then applies the same adjustment.
    """

    MODES = ("ada", "fixed", "noaug")

    def __init__(self, pipe: AugmentPipe | None = None, *, batch_size: int, mode: str = "ada",
                 p: float = 0.0, target: float = 0.6, interval: int = 4, kimg: float = 100,
                 all_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None):
        if mode not in self.MODES:
            raise DrfhqError(f"unknown augmentation mode {mode!r}; choose one of {self.MODES}")
        if batch_size < 1 or interval < 1 or kimg <= 0:
            raise DrfhqError(f"ADA needs batch_size >= 1, interval >= 1, kimg > 0; got "
                             f"{batch_size}, {interval}, {kimg}")
        self.pipe = pipe
        self.mode = mode
        self.batch_size = int(batch_size)
        self.target = float(target)
        self.interval = int(interval)
        self.kimg = float(kimg)
        self.all_reduce = all_reduce
        self._own_p = torch.zeros([])
        self._p_tensor().fill_(0.0 if mode == "noaug" else float(p))
        self.steps = 0            # training steps seen; adjustments happen when divisible
        self.rt: float | None = None  # mean sign of the last complete interval, for logging
        self._sign_sum: torch.Tensor | float = 0.0
        self._count = 0

    def _p_tensor(self) -> torch.Tensor:
        # Looked up each time: pipe.to(device) replaces the buffer object.
        return self.pipe.p if self.pipe is not None else self._own_p

    @property
    def p(self) -> float:
        return float(self._p_tensor())

    def accumulate(self, real_logits: torch.Tensor) -> None:
        """Record the signs of D's logits on real images (any shape; stays on their device)."""
        signs = real_logits.detach().sign().float()  # sums of +-1 are exact in float32
        self._sign_sum = self._sign_sum + signs.sum()
        self._count += signs.numel()

    def step(self) -> None:
        """Count one training step; at the end of each interval compute ``rt``, adjust ``p`` (in
        'ada' mode) and reset the accumulators (the only point that waits for the device)."""
        self.steps += 1
        if self.steps % self.interval == 0:
            self._end_interval()

    def _end_interval(self) -> None:
        device = self._sign_sum.device if isinstance(self._sign_sum, torch.Tensor) else None
        stats = torch.stack([torch.as_tensor(self._sign_sum, dtype=torch.float32, device=device),
                             torch.tensor(float(self._count), dtype=torch.float32, device=device)])
        if self.all_reduce is not None:
            stats = self.all_reduce(stats)
        sign_sum, count = stats.tolist()
        self._sign_sum, self._count = 0.0, 0
        if count == 0:  # no reals seen: no evidence to move p on
            return
        self.rt = sign_sum / count
        if self.mode == "ada":
            adjust = ada_adjustment(self.rt, self.target, self.batch_size, self.interval, self.kimg)
            p = self._p_tensor()
            p.copy_((p + adjust).clamp(min=0))

    def state_dict(self) -> dict:
        """Everything needed for a resumed run to continue exactly (plain Python values)."""
        return {"mode": self.mode, "p": self.p, "steps": self.steps, "rt": self.rt,
                "sign_sum": float(self._sign_sum), "count": self._count}

    def load_state_dict(self, state: dict) -> None:
        if state["mode"] != self.mode:
            raise DrfhqError(f"ADA state was saved in mode {state['mode']!r}, this run uses "
                             f"{self.mode!r}; start the run with the same augmentation mode")
        self._p_tensor().fill_(state["p"])
        self.steps = int(state["steps"])
        self.rt = state["rt"]
        self._sign_sum = float(state["sign_sum"])
        self._count = int(state["count"])
