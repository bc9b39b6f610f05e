"""A small, deterministic software rasteriser (torch, CPU).

Just enough to render the mini world (and the sample CG portraits in ``samples/renders``): a
pinhole camera, a z-buffer over triangles (coverage tested in float32), perspective-correct
attribute interpolation and shading in float64, bilinear texture lookups, Blinn-Phong
lighting and a few image filters. Every reduction is order-independent, so the same inputs
always give the same pixels, whatever the number of threads.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

DTYPE = torch.float64
RASTER_DTYPE = torch.float32  # coverage and z tests (see rasterize)

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


def signed_areas(xy: torch.Tensor, tris: torch.Tensor) -> torch.Tensor:
    """Twice the signed pixel-space area of each triangle (< 0: wound towards the camera for
    the hm08 mesh, whose outward faces are counter-clockwise in a y-up world)."""
    v = xy[tris]
    return _edge(v[:, 0, 0], v[:, 0, 1], v[:, 1, 0], v[:, 1, 1], v[:, 2, 0], v[:, 2, 1])


def rasterize(xy: torch.Tensor, depth: torch.Tensor, tris: torch.Tensor, width: int, height: int,
              layer: torch.Tensor | None = None, n_layers: int = 1,
              cull_back: torch.Tensor | None = None, return_depth: bool = False):
    """Index of the nearest triangle covering each pixel centre, -1 for background.

    Works by listing every (triangle, pixel-in-its-bounding-box) pair, keeping
    the covered ones and reducing with a per-pixel minimum of depth.  Ties go to
    the lowest triangle index, so the result never depends on thread order.

    ``layer`` (per triangle, in ``[0, n_layers)``) keeps one z-buffer per layer, so one pass
    gives the nearest triangle of each layer: the result is then (n_layers, H, W).
    ``cull_back`` (per triangle, bool) skips those triangles when they face away from the
    camera (closed surfaces: their far side is hidden anyway). ``return_depth`` also returns
    the z-buffer (view depth, inf where nothing is drawn) in the same shape.
    """
    # The (triangle, pixel) pairs are tested in float32: half the memory traffic, and its
    # 24-bit mantissa resolves pixel centres exactly up to 4096 px; attributes are then
    # interpolated in float64 (barycentrics).
    tri_xy = xy[tris].to(RASTER_DTYPE)  # (T, 3, 2)
    tri_depth = depth[tris].to(RASTER_DTYPE)
    visible = (tri_depth > 1e-6).all(dim=1)
    if cull_back is not None:
        visible &= ~(cull_back & (signed_areas(xy, tris) >= 0))
    x0 = torch.clamp(torch.ceil(tri_xy[..., 0].min(1).values - 0.5), 0, width).long()
    x1 = torch.clamp(torch.floor(tri_xy[..., 0].max(1).values - 0.5), -1, width - 1).long()
    y0 = torch.clamp(torch.ceil(tri_xy[..., 1].min(1).values - 0.5), 0, height).long()
    y1 = torch.clamp(torch.floor(tri_xy[..., 1].max(1).values - 0.5), -1, height - 1).long()
    bw = (x1 - x0 + 1).clamp(min=0)
    bh = (y1 - y0 + 1).clamp(min=0)
    counts = torch.where(visible, bw * bh, torch.zeros_like(bw))
    base = (layer * (height * width) if layer is not None
            else torch.zeros(len(tris), dtype=torch.long))

    zbuf = torch.full((n_layers * height * width,), math.inf, dtype=tri_xy.dtype)
    face = torch.full((n_layers * height * width,), -1, dtype=torch.long)
    tri_ids = torch.nonzero(counts > 0).squeeze(1)
    start = 0
    while start < len(tri_ids):
        # Take as many triangles as fit in the pair budget (at least one).
        csum = torch.cumsum(counts[tri_ids[start:]], 0)
        n = max(1, int(torch.searchsorted(csum, MAX_PAIRS_PER_CHUNK, right=True)))
        chunk = tri_ids[start:start + n]
        start += n
        _rasterize_chunk(chunk, tri_xy, tri_depth, x0, y0, bw, counts, width, base, zbuf, face)
    shape = (height, width) if layer is None else (n_layers, height, width)
    return (face.view(shape), zbuf.view(shape).to(xy.dtype)) if return_depth else face.view(shape)


def _rasterize_chunk(chunk, tri_xy, tri_depth, x0, y0, bw, counts, width, base, zbuf, face):
    """Z-test one batch of triangles against the running buffers (in place)."""
    c = counts[chunk]
    pair_tri = torch.repeat_interleave(chunk, c)
    offsets = torch.arange(int(c.sum())) - torch.repeat_interleave(torch.cumsum(c, 0) - c, c)
    row_len = bw[pair_tri]
    py = offsets // row_len
    px = x0[pair_tri] + (offsets - py * row_len)
    py = py + y0[pair_tri]
    cx, cy = px.to(tri_xy.dtype) + 0.5, py.to(tri_xy.dtype) + 0.5
    v = tri_xy[pair_tri]
    w0 = _edge(v[:, 1, 0], v[:, 1, 1], v[:, 2, 0], v[:, 2, 1], cx, cy)
    w1 = _edge(v[:, 2, 0], v[:, 2, 1], v[:, 0, 0], v[:, 0, 1], cx, cy)
    w2 = _edge(v[:, 0, 0], v[:, 0, 1], v[:, 1, 0], v[:, 1, 1], cx, cy)
    area = w0 + w1 + w2
    # Accept both windings: the mesh has open helper surfaces seen from either side.
    inside = (((w0 >= 0) & (w1 >= 0) & (w2 >= 0) | (w0 <= 0) & (w1 <= 0) & (w2 <= 0))
              & (area.abs() > 1e-6))
    pair_tri, px, py = pair_tri[inside], px[inside], py[inside]
    b = torch.stack([w0[inside], w1[inside], w2[inside]], 1) / area[inside, None]
    # Depth is interpolated as 1/z, which is linear in screen space.
    z = 1.0 / (b / tri_depth[pair_tri]).sum(1)
    pix = base[pair_tri] + py * width + px
    chunk_z = torch.full_like(zbuf, math.inf).scatter_reduce(0, pix, z, "amin")
    winner = z == chunk_z[pix]
    chunk_face = torch.full_like(face, torch.iinfo(torch.long).max)
    chunk_face = chunk_face.scatter_reduce(0, pix[winner], pair_tri[winner], "amin")
    closer = chunk_z < zbuf
    zbuf[closer] = chunk_z[closer]
    face[closer] = chunk_face[closer]


def barycentrics_at(xy: torch.Tensor, depth: torch.Tensor, tris: torch.Tensor,
                    face: torch.Tensor, px: torch.Tensor, py: torch.Tensor) -> torch.Tensor:
    """Perspective-correct barycentric weights (N, 3) of triangles ``face`` at pixels (px, py)."""
    cx, cy = px.to(xy.dtype) + 0.5, py.to(xy.dtype) + 0.5
    t = tris[face]
    v = xy[t]
    w0 = _edge(v[:, 1, 0], v[:, 1, 1], v[:, 2, 0], v[:, 2, 1], cx, cy)
    w1 = _edge(v[:, 2, 0], v[:, 2, 1], v[:, 0, 0], v[:, 0, 1], cx, cy)
    w2 = _edge(v[:, 0, 0], v[:, 0, 1], v[:, 1, 0], v[:, 1, 1], cx, cy)
    b = torch.stack([w0, w1, w2], 1) / (w0 + w1 + w2)[:, None]
    b = b / depth[t]
    return b / b.sum(1, keepdim=True)


def barycentrics(xy: torch.Tensor, depth: torch.Tensor, tris: torch.Tensor, face: torch.Tensor) -> torch.Tensor:
    """Perspective-correct barycentric weights (N, 3) of the pixels with face >= 0."""
    py, px = torch.nonzero(face >= 0, as_tuple=True)
    return barycentrics_at(xy, depth, tris, face[py, px], px, py)


def interpolate(values: torch.Tensor, tris: torch.Tensor, face_of_pixel: torch.Tensor, bary: torch.Tensor) -> torch.Tensor:
    """Per-pixel attribute (N, C) from per-corner ``values[tris]`` and barycentrics."""
    t = tris if face_of_pixel is None else tris[face_of_pixel]
    # Three gathers and two adds: much faster than a reduction over a length-3 axis.
    return (values[t[:, 0]] * bary[:, 0:1] + values[t[:, 1]] * bary[:, 1:2]
            + values[t[:, 2]] * bary[:, 2:3])


def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise dot product of (N, 3) tensors, as (N, 1)."""
    return a[:, 0:1] * b[:, 0:1] + a[:, 1:2] * b[:, 1:2] + a[:, 2:3] * b[:, 2:3]


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


def gaussian_kernel(sigma: float, dtype=DTYPE) -> torch.Tensor:
    """Normalised 1-D Gaussian taps (radius 3 sigma, at least 1)."""
    radius = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=dtype)
    k = torch.exp(-0.5 * (x / max(sigma, 1e-6)) ** 2)
    return k / k.sum()


def gaussian_blur(img: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of an (H, W) or (H, W, C) image, edges replicated."""
    if sigma <= 0:
        return img
    squeeze = img.dim() == 2
    x = (img[..., None] if squeeze else img).permute(2, 0, 1)[:, None]  # (C, 1, H, W)
    k = gaussian_kernel(sigma, img.dtype)
    r = len(k) // 2
    x = torch.nn.functional.pad(x, (r, r, 0, 0), mode="replicate")
    x = torch.nn.functional.conv2d(x, k.view(1, 1, 1, -1))
    x = torch.nn.functional.pad(x, (0, 0, r, r), mode="replicate")
    x = torch.nn.functional.conv2d(x, k.view(1, 1, -1, 1))
    out = x[:, 0].permute(1, 2, 0).contiguous()
    return out[..., 0] if squeeze else out
