"""Face-recognition embeddings and the identity similarity of Tab. 2.

Official: CurricularFace's released IR-101 backbone (HuangYG123/CurricularFace,
``backbone/model_irse.py``, ``IR_101([112, 112])``), built here with the official parameter names
so ``CurricularFace_Backbone.pth`` loads strictly. It reads 112 x 112 RGB in [-1, 1]
(Normalize(0.5, 0.5)) aligned to the ArcFace 5-point template; the points come from dlib's
68 landmarks. Output: a 512-d embedding, L2-normalised before cosine similarity.

The crop shrinks a 1024 px image's face ~4-9x. A one-step bilinear warp would alias there
(stripes finer than the crop's Nyquist fold back at nearly full contrast), so ``warp`` resamples
at an integer multiple k of the crop size (k = ceil(1 / scale), so that stage never shrinks)
and then low-passes and decimates by k with a Lanczos-3 kernel, PIL's ``LANCZOS`` filter. An
axis-aligned crop therefore equals PIL's Lanczos resize of the same region (tests check both).
Lanczos rather than area averaging: at 0.75 cycles per output pixel a box average keeps ~20 %
of the contrast as an alias, Lanczos-3 ~0.3 %.

Substitute ``identity[dlib-resnet-128d]``: dlib's ResNet face descriptor on 150 px chips aligned
by ``dlib.get_face_chip`` with the 68-point shape (padding 0.25, dlib's default).

Identity similarity = mean cosine similarity of paired images (G_real(w) vs G_rendering(w)).
A pair where dlib finds no face in either image is counted in ``n_no_face`` and has NaN as its
value; it is never silently dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from drfhq_lib.data import landmarks
from drfhq_lib.nets import weights
from drfhq_lib.data.images import tensor_to_uint8
from drfhq_lib.nets.weights import Prefer, Resolved

# ----------------------------------------------------------------------------- IR-101 backbone

IR101_UNITS = ((64, 64, 3), (64, 128, 13), (128, 256, 30), (256, 512, 3))  # (in, depth, units)


class BottleneckIR(nn.Module):
    """Improved residual unit of model_irse.py: BN-conv-PReLU-conv-BN plus a shortcut."""

    def __init__(self, in_channel: int, depth: int, stride: int):
        super().__init__()
        if in_channel == depth:
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channel, depth, 1, stride, bias=False), nn.BatchNorm2d(depth))
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channel),
            nn.Conv2d(in_channel, depth, 3, 1, 1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, 3, stride, 1, bias=False),
            nn.BatchNorm2d(depth))

    def forward(self, x):
        return self.res_layer(x) + self.shortcut_layer(x)


class IR101(nn.Module):
    """CurricularFace's IR-101 backbone for 112 x 112 input; ``forward`` returns the 512-d
    embedding (the first output of the official ``Backbone.forward``)."""

    def __init__(self):
        super().__init__()
        self.input_layer = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False),
                                         nn.BatchNorm2d(64), nn.PReLU(64))
        units = []
        for in_channel, depth, n in IR101_UNITS:
            units.append(BottleneckIR(in_channel, depth, 2))
            units += [BottleneckIR(depth, depth, 1) for _ in range(n - 1)]
        self.body = nn.Sequential(*units)
        self.output_layer = nn.Sequential(nn.BatchNorm2d(512), nn.Dropout(0.4), nn.Flatten(),
                                          nn.Linear(512 * 7 * 7, 512),
                                          nn.BatchNorm1d(512, affine=False))

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        return self.output_layer(self.body(self.input_layer(faces)))


def load_curricularface(path: str | Path, device: torch.device | str = "cpu") -> IR101:
    """IR-101 from ``CurricularFace_Backbone.pth`` (a plain state dict; DataParallel's
    ``module.`` prefix is accepted)."""
    return weights.load_strict(IR101(), weights.read_torch_state(path), path,
                               "CurricularFace's IR-101 backbone", device)


# ----------------------------------------------------------------------------- alignment

# ArcFace / insightface 112 x 112 template: eye centres, nose tip, mouth corners (image left first)
ARCFACE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                        [41.5493, 92.3655], [70.7299, 92.2041]])


def five_points(lm68: np.ndarray) -> np.ndarray:
    """ArcFace's five points from dlib's 68 landmarks."""
    return np.stack([lm68[36:42].mean(0), lm68[42:48].mean(0), lm68[30], lm68[48], lm68[54]])


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """3 x 3 least-squares similarity (Umeyama 1991) mapping points ``src`` onto ``dst``."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    rot = u @ sign @ vt
    scale = (sig * np.diag(sign)).sum() / s.var(0).sum()
    m = np.eye(3)
    m[:2, :2] = scale * rot
    m[:2, 2] = mu_d - scale * rot @ mu_s
    return m


LANCZOS_A = 3  # lobes of the decimation kernel (PIL's LANCZOS)


def _bilinear_warp(image: torch.Tensor, dst_from_src: np.ndarray, height: int,
                   width: int) -> torch.Tensor:
    """One bilinear resampling of ``image`` onto a ``height`` x ``width`` grid whose pixel
    coordinates are ``dst_from_src`` of the source's (align_corners=False convention: pixel i
    spans [i, i+1), its centre at i + 0.5)."""
    h, w = image.shape[-2:]
    to_px = np.array([[width / 2, 0, width / 2 - 0.5], [0, height / 2, height / 2 - 0.5],
                      [0, 0, 1]])
    px_to_norm_src = np.linalg.inv(np.array([[w / 2, 0, w / 2 - 0.5], [0, h / 2, h / 2 - 0.5],
                                             [0, 0, 1]]))
    theta = px_to_norm_src @ np.linalg.inv(dst_from_src) @ to_px
    theta = torch.as_tensor(theta[:2], dtype=image.dtype, device=image.device)[None]
    grid = F.affine_grid(theta, [1, image.shape[1], height, width], align_corners=False)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)


def lanczos_taps(factor: int, a: int = LANCZOS_A, dtype: torch.dtype = torch.float32,
                 device=None) -> torch.Tensor:
    """The 2 a ``factor`` weights (summing to 1) that decimate by ``factor``: the Lanczos-a
    kernel sinc(x) sinc(x / a), stretched by ``factor``, at the fine pixels' centres
    (offsets (m + 0.5) / factor - a output pixels from the output pixel's centre)."""
    x = (torch.arange(2 * a * factor, dtype=torch.float64) + 0.5) / factor - a
    taps = torch.sinc(x) * torch.sinc(x / a)
    return (taps / taps.sum()).to(dtype=dtype, device=device)


def warp_scale(dst_from_src: np.ndarray) -> float:
    """Output pixels per source pixel of a similarity (the square root of its determinant)."""
    return float(np.sqrt(abs(np.linalg.det(np.asarray(dst_from_src)[:2, :2]))))


def warp(image: torch.Tensor, dst_from_src: np.ndarray, size: int,
         antialias: bool = True) -> torch.Tensor:
    """Resample ``image`` [1, C, H, W] onto a ``size`` square through a pixel-coordinate
    similarity (differentiable in the image).

    Shrinking (scale < 1) with ``antialias``: bilinear onto a grid k = ceil(1 / scale) times
    finer, which reaches 2 a output pixels past each edge, then a separable Lanczos-a
    decimation by k (see the module notes). ``antialias=False`` is the one-step bilinear warp,
    which aliases when it shrinks."""
    factor = math.ceil(1.0 / warp_scale(dst_from_src) - 1e-9)
    if not antialias or factor <= 1:
        return _bilinear_warp(image, dst_from_src, size, size)
    a = LANCZOS_A
    # fine pixel i has its centre at (i + 0.5) / k - (a - 0.5) output pixels, so output pixel j
    # (centre j + 0.5) reads fine pixels j k ... j k + 2 a k - 1, symmetric about its centre
    fine_from_dst = np.array([[factor, 0, (a - 0.5) * factor], [0, factor, (a - 0.5) * factor],
                              [0, 0, 1]], dtype=np.float64)
    side = (size - 1 + 2 * a) * factor
    fine = _bilinear_warp(image, fine_from_dst @ dst_from_src, side, side)
    taps = lanczos_taps(factor, a, fine.dtype, fine.device)
    c = fine.shape[1]
    out = F.conv2d(fine, taps.view(1, 1, 1, -1).expand(c, 1, 1, -1), stride=(1, factor), groups=c)
    return F.conv2d(out, taps.view(1, 1, -1, 1).expand(c, 1, -1, 1), stride=(factor, 1), groups=c)


def _detection_scale(rgb: np.ndarray, max_side: int = 512) -> float:
    return min(1.0, max_side / max(rgb.shape[:2]))


def face_shape(rgb: np.ndarray):
    """dlib's 68-point ``full_object_detection`` of the largest face, or None.

    Large images are searched at <= 512 px (HOG needs no more for portrait-sized faces, and it is
    4x faster), then the landmarks are predicted at full resolution.
    """
    import dlib
    from PIL import Image

    scale = _detection_scale(rgb)
    small = rgb if scale == 1 else np.asarray(
        Image.fromarray(rgb).resize((round(rgb.shape[1] * scale), round(rgb.shape[0] * scale)),
                                    Image.BILINEAR))
    faces = landmarks.detect_faces(small)
    if not faces:
        return None
    box = [round(v / scale) for v in faces[0].box]
    return landmarks.shape_predictor()(np.ascontiguousarray(rgb), dlib.rectangle(*box))


# ----------------------------------------------------------------------------- embedders

@lru_cache(maxsize=None)
def _dlib_recognizer(path: str):
    import dlib

    return dlib.face_recognition_model_v1(path)


class FaceEmbedder:
    """Embeds image batches in [-1, 1]: ``embed(images) -> (embeddings [N, D], found [N])``.

    Rows of images without a detected face are NaN and ``found`` is False there.
    """

    label: str
    dim: int
    resolved: list[Resolved]

    def embed(self, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


class DlibEmbedder(FaceEmbedder):
    dim = 128

    def __init__(self, path: str | Path, resolved: list[Resolved] | None = None):
        self.path = str(path)
        self.resolved = resolved or [Resolved("curricularface", "substitute",
                                              "identity[dlib-resnet-128d]", Path(path))]
        self.label = self.resolved[0].label

    def chip(self, rgb: np.ndarray) -> np.ndarray | None:
        """The 150 px aligned face chip dlib's descriptor expects, or None without a face."""
        import dlib

        shape = face_shape(rgb)
        return None if shape is None else dlib.get_face_chip(rgb, shape, size=150, padding=0.25)

    def embed(self, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        out = np.full((len(images), self.dim), np.nan)
        for i, rgb in enumerate(tensor_to_uint8(images)):
            chip = self.chip(np.ascontiguousarray(rgb))
            if chip is not None:
                out[i] = np.asarray(_dlib_recognizer(self.path).compute_face_descriptor(chip))
        return out, ~np.isnan(out[:, 0])


class CurricularFaceEmbedder(FaceEmbedder):
    dim = 512

    def __init__(self, net: IR101, resolved: list[Resolved]):
        self.net = net
        self.resolved = resolved
        self.label = resolved[0].label

    def aligned(self, images: torch.Tensor) -> tuple[torch.Tensor, np.ndarray]:
        """112 px ArcFace-aligned crops [M, 3, 112, 112] of the images where a face was found."""
        crops, found = [], np.zeros(len(images), bool)
        for i, rgb in enumerate(tensor_to_uint8(images)):
            shape = face_shape(np.ascontiguousarray(rgb))
            if shape is None:
                continue
            lm = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
            m = similarity_transform(five_points(lm), ARCFACE_112)
            crops.append(warp(images[i:i + 1], m, 112))
            found[i] = True
        return (torch.cat(crops) if crops else images.new_zeros(0, 3, 112, 112)), found

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        device = next(self.net.parameters()).device
        crops, found = self.aligned(images.to(device))
        out = np.full((len(images), self.dim), np.nan)
        if found.any():
            out[found] = F.normalize(self.net(crops), dim=1).double().cpu().numpy()
        return out, found


def build_embedder(prefer: Prefer = "auto", device: torch.device | str = "cpu") -> FaceEmbedder:
    """CurricularFace IR-101 or the dlib descriptor, chosen through the registry."""
    r = weights.resolve("curricularface", prefer)
    found_by = [weights.resolve("dlib-landmarks68")]
    if r.is_official:
        return CurricularFaceEmbedder(load_curricularface(r.path, device), [r] + found_by)
    return DlibEmbedder(r.path, [r] + found_by)


# ----------------------------------------------------------------------------- identity similarity

def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity (NaN rows stay NaN)."""
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@dataclass
class IdentityResult:
    """Mean cosine similarity over the pairs where both faces were found, with the rest counted."""

    label: str
    values: list[float]  # per pair; NaN where a face was missing
    resolved: list[Resolved] = field(default_factory=list)

    @property
    def n_pairs(self) -> int:
        return len(self.values)

    @property
    def n_no_face(self) -> int:
        return sum(math.isnan(v) for v in self.values)

    @property
    def mean(self) -> float:
        kept = [v for v in self.values if not math.isnan(v)]
        return float(np.mean(kept)) if kept else float("nan")

    def merged(self, other: "IdentityResult") -> "IdentityResult":
        return IdentityResult(self.label, self.values + other.values, self.resolved)

    def as_row(self) -> dict:
        return {"identity_similarity": self.mean, "n_pairs": self.n_pairs,
                "n_no_face": self.n_no_face, "embedder": self.label}


def identity_similarity(images_a: torch.Tensor, images_b: torch.Tensor,
                        embedder: FaceEmbedder | None = None, prefer: Prefer = "auto",
                        device: torch.device | str = "cpu") -> IdentityResult:
    """Identity similarity of paired batches in [-1, 1] (image i of a with image i of b)."""
    if len(images_a) != len(images_b):
        raise ValueError(f"paired batches differ in length: {len(images_a)} vs {len(images_b)}")
    embedder = embedder or build_embedder(prefer, device)
    ea, _ = embedder.embed(images_a)
    eb, _ = embedder.embed(images_b)
    return IdentityResult(embedder.label, [float(v) for v in cosine(ea, eb)], embedder.resolved)
