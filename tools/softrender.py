"""A small, deterministic software rasteriser (torch, CPU, float64).

Just enough to make the sample CG portraits in ``samples/renders``: a pinhole
camera, a z-buffer over triangles, perspective-correct attribute
interpolation, bilinear texture lookups and Blinn-Phong lighting.  Everything
runs in float64 on the CPU with order-independent reductions, so the same
inputs always give the same pixels.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

DTYPE = torch.float64

# Cap on (triangle, pixel) candidate pairs held in memory at once.
MAX_PAIRS_PER_CHUNK = 6_000_000


@dataclasses.dataclass(frozen=True)
class Camera:
    """Pinhole camera looking from ``eye`` at ``target``; y is up in the world."""

    eye: tuple[float, float, float]
    target: tuple[float, float, float]
    vfov_deg: float
    width: int
    height: int
    up: tuple[float, float, float] = (0.0, 1.0, 0.0)

    def scaled(self, factor: int) -> "Camera":
        """The same view at ``factor`` times the resolution (for supersampling)."""
        return dataclasses.replace(self, width=self.width * factor, height=self.height * factor)


def world_to_camera(cam: Camera) -> torch.Tensor:
    """4x4 matrix taking world points to camera space (x right, y up, looking down -z)."""
    eye = torch.tensor(cam.eye, dtype=DTYPE)
    forward = torch.tensor(cam.target, dtype=DTYPE) - eye
    forward = forward / forward.norm()
    right = torch.linalg.cross(forward, torch.tensor(cam.up, dtype=DTYPE))
    right = right / right.norm()
    up = torch.linalg.cross(right, forward)
    rot = torch.stack([right, up, -forward])
    mat = torch.eye(4, dtype=DTYPE)
    mat[:3, :3] = rot
    mat[:3, 3] = -rot @ eye
    return mat


def project_to_pixels(points: torch.Tensor, cam: Camera) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel coordinates (x right, y down; pixel centres at +0.5) and view depth of world points."""
    mat = world_to_camera(cam)
    p = points @ mat[:3, :3].T + mat[:3, 3]
    depth = -p[:, 2]
    focal = 0.5 * cam.height / math.tan(math.radians(cam.vfov_deg) / 2)
    x = cam.width / 2 + focal * p[:, 0] / depth
    y = cam.height / 2 - focal * p[:, 1] / depth
    return torch.stack([x, y], dim=1), depth


def _edge(ax, ay, bx, by, px, py):
    """Twice the signed area of (a, b, p): the unnormalised barycentric of the opposite vertex."""
    return (bx - ax) * (py - ay) - (by - ay) * (px - ax)


def rasterize(xy: torch.Tensor, depth: torch.Tensor, tris: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Index of the nearest triangle covering each pixel centre, -1 for background.

    Works by listing every (triangle, pixel-in-its-bounding-box) pair, keeping
    the covered ones and reducing with a per-pixel minimum of depth.  Ties go to
    the lowest triangle index, so the result never depends on thread order.
    """
    tri_xy = xy[tris]  # (T, 3, 2)
    tri_depth = depth[tris]
    visible = (tri_depth > 1e-6).all(dim=1)
    x0 = torch.clamp(torch.ceil(tri_xy[..., 0].min(1).values - 0.5), 0, width).long()
    x1 = torch.clamp(torch.floor(tri_xy[..., 0].max(1).values - 0.5), -1, width - 1).long()
    y0 = torch.clamp(torch.ceil(tri_xy[..., 1].min(1).values - 0.5), 0, height).long()
    y1 = torch.clamp(torch.floor(tri_xy[..., 1].max(1).values - 0.5), -1, height - 1).long()
    bw = (x1 - x0 + 1).clamp(min=0)
    bh = (y1 - y0 + 1).clamp(min=0)
    counts = torch.where(visible, bw * bh, torch.zeros_like(bw))

    zbuf = torch.full((height * width,), math.inf, dtype=DTYPE)
    face = torch.full((height * width,), -1, dtype=torch.long)
    tri_ids = torch.nonzero(counts > 0).squeeze(1)
    start = 0
    while start < len(tri_ids):
        # Take as many triangles as fit in the pair budget (at least one).
        csum = torch.cumsum(counts[tri_ids[start:]], 0)
        n = max(1, int(torch.searchsorted(csum, MAX_PAIRS_PER_CHUNK, right=True)))
        chunk = tri_ids[start:start + n]
        start += n
        _rasterize_chunk(chunk, tri_xy, tri_depth, x0, y0, bw, counts, width, zbuf, face)
    return face.view(height, width)


def _rasterize_chunk(chunk, tri_xy, tri_depth, x0, y0, bw, counts, width, zbuf, face):
    """Z-test one batch of triangles against the running buffers (in place)."""
    c = counts[chunk]
    pair_tri = torch.repeat_interleave(chunk, c)
    offsets = torch.arange(int(c.sum())) - torch.repeat_interleave(torch.cumsum(c, 0) - c, c)
    px = x0[pair_tri] + offsets % bw[pair_tri]
    py = y0[pair_tri] + offsets // bw[pair_tri]
    cx, cy = px.to(DTYPE) + 0.5, py.to(DTYPE) + 0.5
    v = tri_xy[pair_tri]
    w0 = _edge(v[:, 1, 0], v[:, 1, 1], v[:, 2, 0], v[:, 2, 1], cx, cy)
    w1 = _edge(v[:, 2, 0], v[:, 2, 1], v[:, 0, 0], v[:, 0, 1], cx, cy)
    w2 = _edge(v[:, 0, 0], v[:, 0, 1], v[:, 1, 0], v[:, 1, 1], cx, cy)
    area = w0 + w1 + w2
    # Accept both windings: the mesh has open helper surfaces seen from either side.
    inside = ((w0 >= 0) & (w1 >= 0) & (w2 >= 0) | (w0 <= 0) & (w1 <= 0) & (w2 <= 0)) & (area.abs() > 1e-12)
    pair_tri, px, py = pair_tri[inside], px[inside], py[inside]
    b = torch.stack([w0[inside], w1[inside], w2[inside]], 1) / area[inside, None]
    # Depth is interpolated as 1/z, which is linear in screen space.
    z = 1.0 / (b / tri_depth[pair_tri]).sum(1)
    pix = py * width + px
    chunk_z = torch.full_like(zbuf, math.inf).scatter_reduce(0, pix, z, "amin")
    winner = z == chunk_z[pix]
    chunk_face = torch.full_like(face, torch.iinfo(torch.long).max)
    chunk_face = chunk_face.scatter_reduce(0, pix[winner], pair_tri[winner], "amin")
    closer = chunk_z < zbuf
    zbuf[closer] = chunk_z[closer]
    face[closer] = chunk_face[closer]


def barycentrics(xy: torch.Tensor, depth: torch.Tensor, tris: torch.Tensor, face: torch.Tensor) -> torch.Tensor:
    """Perspective-correct barycentric weights (N, 3) of the pixels with face >= 0."""
    height, width = face.shape
    py, px = torch.nonzero(face >= 0, as_tuple=True)
    cx, cy = px.to(DTYPE) + 0.5, py.to(DTYPE) + 0.5
    t = tris[face[py, px]]
    v = xy[t]
    w0 = _edge(v[:, 1, 0], v[:, 1, 1], v[:, 2, 0], v[:, 2, 1], cx, cy)
    w1 = _edge(v[:, 2, 0], v[:, 2, 1], v[:, 0, 0], v[:, 0, 1], cx, cy)
    w2 = _edge(v[:, 0, 0], v[:, 0, 1], v[:, 1, 0], v[:, 1, 1], cx, cy)
    b = torch.stack([w0, w1, w2], 1) / (w0 + w1 + w2)[:, None]
    b = b / depth[t]
    return b / b.sum(1, keepdim=True)


def interpolate(values: torch.Tensor, tris: torch.Tensor, face_of_pixel: torch.Tensor, bary: torch.Tensor) -> torch.Tensor:
    """Per-pixel attribute (N, C) from per-corner ``values[tris]`` and barycentrics."""
    return (values[tris[face_of_pixel]] * bary[..., None]).sum(1)


def vertex_normals(verts: torch.Tensor, tris: torch.Tensor) -> torch.Tensor:
    """Area-weighted smooth vertex normals."""
    a, b, c = verts[tris[:, 0]], verts[tris[:, 1]], verts[tris[:, 2]]
    fn = torch.linalg.cross(b - a, c - a)
    n = torch.zeros_like(verts).index_add_(0, tris.reshape(-1), fn.repeat_interleave(3, 0))
    return n / n.norm(dim=1, keepdim=True).clamp(min=1e-12)


def sample_bilinear(image: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Bilinear lookup of an (H, W, C) texture at OBJ-style uv (v up), clamped at edges."""
    h, w = image.shape[:2]
    x = (uv[:, 0].clamp(0, 1) * (w - 1))
    y = ((1 - uv[:, 1].clamp(0, 1)) * (h - 1))
    x0, y0 = x.floor().long().clamp(0, w - 2), y.floor().long().clamp(0, h - 2)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    top = image[y0, x0] * (1 - fx) + image[y0, x0 + 1] * fx
    bottom = image[y0 + 1, x0] * (1 - fx) + image[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def blinn_phong(normal, view_dir, light_dir, light_rgb, albedo, spec_strength, shininess):
    """Diffuse + specular radiance from one directional light (all (N, 3), linear RGB)."""
    ndl = (normal * light_dir).sum(1, keepdim=True).clamp(min=0)
    half = light_dir + view_dir
    half = half / half.norm(dim=1, keepdim=True).clamp(min=1e-12)
    ndh = (normal * half).sum(1, keepdim=True).clamp(min=0)
    spec = spec_strength * ndh ** shininess * (ndl > 0)
    return light_rgb * (albedo * ndl + spec)


def vertical_gradient(height: int, width: int, top_srgb, bottom_srgb) -> torch.Tensor:
    """(H, W, 3) linear-RGB backdrop: a vertical gradient with a faint vignette."""
    top = srgb_to_linear(torch.tensor(top_srgb, dtype=DTYPE) / 255)
    bottom = srgb_to_linear(torch.tensor(bottom_srgb, dtype=DTYPE) / 255)
    t = torch.linspace(0, 1, height, dtype=DTYPE)[:, None, None]
    img = (top * (1 - t) + bottom * t).expand(height, width, 3).clone()
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, height, dtype=DTYPE), torch.linspace(-1, 1, width, dtype=DTYPE), indexing="ij")
    return img * (1 - 0.25 * (xx ** 2 + yy ** 2) / 2)[..., None]


def srgb_to_linear(c: torch.Tensor) -> torch.Tensor:
    return torch.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(c: torch.Tensor) -> torch.Tensor:
    c = c.clamp(0, 1)
    return torch.where(c <= 0.0031308, c * 12.92, 1.055 * c ** (1 / 2.4) - 0.055)


def tonemap(linear_rgb: torch.Tensor, shoulder: float = 0.8) -> torch.Tensor:
    """Identity below ``shoulder``, then a soft roll-off to 1 so highlights do not clip flat."""
    over = (linear_rgb - shoulder).clamp(min=0)
    soft = shoulder + (1 - shoulder) * (1 - torch.exp(-over / (1 - shoulder)))
    return torch.where(linear_rgb > shoulder, soft, linear_rgb)


def box_downsample(img: torch.Tensor, factor: int) -> torch.Tensor:
    """Average factor x factor blocks: the supersampling anti-alias filter."""
    h, w, c = img.shape
    return img.view(h // factor, factor, w // factor, factor, c).mean(dim=(1, 3))


def to_uint8(linear_rgb: torch.Tensor) -> np.ndarray:
    """Quantised sRGB image (rounded, so deterministic)."""
    return torch.round(linear_to_srgb(linear_rgb) * 255).to(torch.uint8).numpy()
