"""The two looks of the mini world, applied to the same rasterised fragments.

* ``R`` ("rendered"): a plain real-time CG render, as samples/renders/*_portrait.png:
  flat albedo, Lambert + Blinn-Phong key/fill/rim lights, hemisphere ambient, a grey
  gradient backdrop.
* ``P`` ("photo-style"): the most photographic look this renderer can make (see
  :func:`shade_p`): skin detail from the MPFB2 ``sss.png`` map, soft warm light with
  wrap (subsurface-like) diffuse, skin sheen, soft shadows, ambient occlusion from the depth
  buffer, a warm out-of-focus backdrop, and a camera finish (filmic curve, glow, grain).

Shading runs on the supersampled fragments; the finish (downsampling, tone curve, grain)
runs per output image.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from drfhq_lib.miniworld import softrender as sr
from drfhq_lib.miniworld.assets import SkinMaps
from drfhq_lib.miniworld.character import Character, FaceFrame

STYLES = ("R", "P")

# Triangle groups drawn, by material.  Joint cubes, skirt and genital helpers are skipped;
# the "tights" helper (a shell just outside the skin) is drawn as a fitted top and trousers.
MATERIAL_GROUPS = {
    "skin": ("body",),
    "eye_l": ("helper-l-eye",),
    "eye_r": ("helper-r-eye",),
    "teeth": ("helper-upper-teeth", "helper-lower-teeth"),
    "tongue": ("helper-tongue",),
    "cloth": ("helper-tights",),
}
MATERIAL_IDS = {name: i for i, name in enumerate(MATERIAL_GROUPS)}


def linear_rgb(srgb) -> torch.Tensor:
    return sr.srgb_to_linear(torch.tensor(srgb, dtype=sr.DTYPE) / 255)


@dataclasses.dataclass
class Fragments:
    """What the rasteriser saw at each covered pixel of a (supersampled) image."""

    cam: sr.Camera  # the supersampled camera
    covered: torch.Tensor  # (H, W) bool
    mat_id: torch.Tensor  # (N,) material per covered pixel, row-major order
    pos: torch.Tensor  # (N, 3) world position
    normal: torch.Tensor  # (N, 3) unit smooth normal
    uv: torch.Tensor  # (N, 2)
    depth: torch.Tensor  # (H, W) view depth (inf on the background)
    tri_verts: torch.Tensor  # (N, 3) vertex ids of the triangle seen at each pixel
    bary: torch.Tensor  # (N, 3) its perspective-correct barycentric weights
    shadow: torch.Tensor | None = None  # (N, 1) key-light visibility, P only
    cache: dict = dataclasses.field(default_factory=dict)  # shared by the styles

    def interpolate(self, values: torch.Tensor) -> torch.Tensor:
        """Per-pixel (N, C) value of per-vertex ``values`` (V, C)."""
        return sr.interpolate(values, self.tri_verts, None, self.bary)


# ---------------------------------------------------------------------------
# Albedo: shared by both styles (the identity's colours are the same in both).
# ---------------------------------------------------------------------------


def skin_albedo(ch: Character, maps: SkinMaps, uv: torch.Tensor) -> torch.Tensor:
    """Per-pixel skin colour: base tone, detail map, and tinted lips/eyelids/mouth regions."""
    base = linear_rgb(ch.skin_srgb)
    detail = sr.sample_bilinear(maps.detail, uv)
    albedo = base * (detail / float(maps.detail.mean())) ** 0.6
    lips = sr.sample_bilinear(maps.lips, uv)
    lip_colour = base * torch.tensor([0.85, 0.45, 0.45], dtype=sr.DTYPE)
    albedo = albedo * (1 - lips) + lip_colour * lips
    eyelids = sr.sample_bilinear(maps.eyelids, uv)
    albedo = albedo * (1 - 0.18 * eyelids)
    mouth = sr.sample_bilinear(maps.inside_mouth, uv)
    albedo = albedo * (1 - mouth) + torch.tensor([0.25, 0.06, 0.06], dtype=sr.DTYPE) * mouth
    return albedo


def eyebrow_weight(pos: torch.Tensor, frame: FaceFrame) -> torch.Tensor:
    """Soft 0..1 mask of painted eyebrows: an arch above each eye, on the front of the face."""
    weights = []
    r = frame.eye_radius
    for centre, outward in ((frame.eye_l, 1.0), (frame.eye_r, -1.0)):
        # u runs from the nose side (-1, above the inner eye corner) to the temple side (+1).
        x = (pos[:, 0] - centre[0]) * outward
        u = torch.where(x < 0, x / (1.15 * r), x / (1.7 * r))
        height = centre[1] + 1.25 * r + 0.35 * r * (1 - (u - 0.1) ** 2) - 0.15 * r * u.clamp(min=0)
        thickness = 0.32 * r * (1 - 0.45 * u.clamp(min=0))  # tapers towards the temple
        across = ((pos[:, 1] - height).abs() / thickness).clamp(max=2)
        along = ((u.abs() - 1.0) / 0.15).clamp(min=0)
        front = pos[:, 2] > centre[2] - 1.2 * r
        weights.append(torch.exp(-across ** 4 - along ** 2) * front)
    return torch.maximum(*weights)[:, None]


def hair_weight(pos: torch.Tensor, frame: FaceFrame, hairline: float) -> torch.Tensor:
    """Soft 0..1 mask of cropped hair painted on the scalp, above a hairline around the head.

    The hairline height (relative to the eyes) is a smooth function of the angle
    around the head: high on the forehead, lower over the ears, down to the nape.
    """
    eyes = (frame.eye_l + frame.eye_r) / 2
    head_z = float(eyes[2]) - 0.9  # rough centre of the skull, behind the eyes
    theta = torch.atan2(pos[:, 0], pos[:, 2] - head_z)
    line = 0.16 + 0.725 * torch.cos(theta) - 0.14 * torch.cos(2 * theta)
    line = line + hairline * torch.cos(theta).clamp(min=0)
    height = pos[:, 1] - eyes[1]
    above_neck = pos[:, 1] > frame.neck_y
    return (torch.sigmoid((height - line) / 0.03) * above_neck)[:, None]


def hair_texture(pos: torch.Tensor) -> torch.Tensor:
    """Fine streaky variation (0.75..1.25) so painted hair looks like hair, not paint."""
    streaks = (torch.sin(pos[:, 0] * 97.0 + torch.sin(pos[:, 2] * 23.0) * 2.0)
               * torch.sin(pos[:, 2] * 71.0 + pos[:, 1] * 13.0))
    return (1.0 + 0.15 * streaks)[:, None]


def eye_albedo(ch: Character, pos: torch.Tensor, centre: torch.Tensor, gaze: torch.Tensor,
               limbal: float = 0.35) -> torch.Tensor:
    """Procedural eyeball: white sclera, coloured iris with a dark limbal ring, black pupil."""
    d = pos - centre
    cos_angle = (d * gaze).sum(1) / d.norm(dim=1).clamp(min=1e-9)
    angle = torch.rad2deg(torch.acos(cos_angle.clamp(-1, 1)))[:, None]
    sclera = linear_rgb((225, 220, 212))
    iris = linear_rgb(ch.iris_srgb)
    ring = iris * limbal
    pupil = linear_rgb((8, 8, 10))
    # Angular radii suit MakeHuman's 14 mm eyeball: iris ~12 mm across, pupil ~5 mm.
    iris_mix = torch.sigmoid((29 - angle) / 1.2)
    ring_mix = torch.exp(-((angle - 27) / 2.5) ** 2)
    pupil_mix = torch.sigmoid((11 - angle) / 0.8)
    colour = sclera * (1 - iris_mix) + iris * iris_mix
    colour = colour * (1 - ring_mix) + ring * ring_mix
    return colour * (1 - pupil_mix) + pupil * pupil_mix


@dataclasses.dataclass
class Light:
    direction: tuple  # in camera terms: (right, up, towards-camera)
    rgb: tuple
    spec: float = 1.0


LIGHTS = [
    Light((-0.55, 0.55, 0.65), (2.0, 1.88, 1.72)),  # warm key, upper left
    Light((0.75, 0.05, 0.6), (0.55, 0.62, 0.75), spec=0.3),  # cool fill, right
    Light((0.3, 0.6, -0.75), (0.7, 0.7, 0.75), spec=0.5),  # rim from behind
]

# Per material: (specular strength, shininess).
SPECULAR = {"skin": (0.06, 24.0), "eye_l": (0.9, 300.0), "eye_r": (0.9, 300.0),
            "teeth": (0.2, 40.0), "tongue": (0.1, 30.0), "cloth": (0.015, 8.0)}

R_BACKGROUND = ((150, 156, 166), (92, 96, 104))  # top, bottom sRGB of the grey gradient


def camera_basis(cam: sr.Camera) -> torch.Tensor:
    """Rows: camera right, up, and backward (towards the viewer) in world space."""
    return sr.world_to_camera(cam)[:3, :3]


def material_albedo(ch, maps, frame, cam, frags: Fragments, normal: torch.Tensor):
    """Per-pixel albedo, specular strength and shininess (both styles share them).

    ``normal`` is updated in place on the eyes (their exact sphere normal). The result is
    cached on ``frags`` (albedo is shared by both styles: copy before changing it).
    """
    cached = frags.cache.get("albedo")
    if cached is not None:
        albedo, spec, shin, eye_sel, eye_normal = cached
        normal[eye_sel] = eye_normal
        return albedo, spec, shin
    albedo, spec, shin = _material_albedo(ch, maps, frame, cam, frags, normal)
    eye_sel = (frags.mat_id == MATERIAL_IDS["eye_l"]) | (frags.mat_id == MATERIAL_IDS["eye_r"])
    frags.cache["albedo"] = albedo, spec, shin, eye_sel, normal[eye_sel].clone()
    return albedo, spec, shin


def _material_albedo(ch, maps, frame, cam, frags: Fragments, normal: torch.Tensor):
    mat_id, pos, uv = frags.mat_id, frags.pos, frags.uv
    albedo = torch.zeros_like(pos)
    spec = torch.zeros(len(pos), 1, dtype=sr.DTYPE)
    shin = torch.ones(len(pos), 1, dtype=sr.DTYPE)
    eye_pos = torch.tensor(cam.eye, dtype=sr.DTYPE)
    for name, mid in MATERIAL_IDS.items():
        sel = mat_id == mid
        if not sel.any():
            continue
        if name == "skin":
            a = skin_albedo(ch, maps, uv[sel])
            brow = eyebrow_weight(pos[sel], frame)
            a = a * (1 - brow) + linear_rgb(ch.brow_srgb) * brow
            hair = hair_weight(pos[sel], frame, ch.hairline)
            a = a * (1 - hair) + linear_rgb(ch.hair_srgb) * hair_texture(pos[sel]) * hair
        elif name in ("eye_l", "eye_r"):
            centre = frame.eye_l if name == "eye_l" else frame.eye_r
            gaze = eye_pos - centre  # the eyes look at the camera
            a = eye_albedo(ch, pos[sel], centre, gaze / gaze.norm())
            # The low-poly eyeball is a sphere: use its exact normal so highlights stay round.
            normal[sel] = (pos[sel] - centre) / (pos[sel] - centre).norm(dim=1, keepdim=True)
        elif name == "teeth":
            a = linear_rgb((215, 205, 185)).expand(int(sel.sum()), 3)
        elif name == "tongue":
            a = linear_rgb((150, 60, 60)).expand(int(sel.sum()), 3)
        else:  # cloth: a top above the waist, trousers below
            top = (pos[sel][:, 1:2] > frame.waist_y).to(sr.DTYPE)
            a = linear_rgb(ch.shirt_srgb) * top + linear_rgb(ch.trousers_srgb) * (1 - top)
        albedo[sel] = a
        spec[sel], shin[sel] = SPECULAR[name]
    return albedo, spec, shin


def shade_r(ch: Character, maps: SkinMaps, frame: FaceFrame, frags: Fragments) -> torch.Tensor:
    """Linear RGB radiance of the covered pixels in the plain CG look (style R)."""
    cam = frags.cam
    normal = frags.normal.clone()
    albedo, spec, shin = material_albedo(ch, maps, frame, cam, frags, normal)
    pos = frags.pos
    eye_pos = torch.tensor(cam.eye, dtype=sr.DTYPE)
    view = eye_pos - pos
    view = view / view.norm(dim=1, keepdim=True)
    # Surfaces seen from behind (open helper shells): shade the side facing the camera.
    normal = torch.where((normal * view).sum(1, keepdim=True) < 0, -normal, normal)
    basis = camera_basis(cam)
    sky = 0.5 + 0.5 * (normal * basis[1]).sum(1, keepdim=True)  # hemisphere ambient
    radiance = albedo * (0.06 + 0.08 * sky)
    for light in LIGHTS:
        d = torch.tensor(light.direction, dtype=sr.DTYPE) @ basis
        d = (d / d.norm()).expand_as(pos)
        radiance = radiance + sr.blinn_phong(normal, view, d,
                                             torch.tensor(light.rgb, dtype=sr.DTYPE),
                                             albedo, spec * light.spec, shin)
    return radiance


def background_r(height: int, width: int) -> torch.Tensor:
    return sr.vertical_gradient(height, width, *R_BACKGROUND)


def finish_r(image: torch.Tensor, factor: int) -> torch.Tensor:
    """Supersampled linear image -> output-size display-ready linear image."""
    return sr.tonemap(sr.box_downsample(image, factor))


# ---------------------------------------------------------------------------
# Style P: the photographic look.
# ---------------------------------------------------------------------------

# Camera-relative directions (right, up, towards the camera), linear RGB intensities.
P_KEY = Light((-0.72, 0.45, 0.55), (2.6, 2.2, 1.72), spec=1.0)  # large warm soft box
P_LIGHTS = [
    Light((0.8, 0.12, 0.55), (0.22, 0.25, 0.31), spec=0.25),  # cool window fill, right
    Light((0.35, 0.55, -0.75), (0.85, 0.72, 0.58), spec=0.6),  # warm hair/rim light
    Light((0.0, -0.85, 0.5), (0.16, 0.11, 0.08), spec=0.0),  # warm bounce from below
]
# Wrap-around diffuse per channel (red light scatters furthest under the skin).
P_WRAP = {"skin": (0.38, 0.2, 0.12), "default": (0.08, 0.08, 0.08)}
P_SKY = (0.058, 0.062, 0.072)  # hemisphere ambient from above
P_GROUND = (0.060, 0.042, 0.030)  # warm floor/room bounce
# Per material: two specular lobes ((weight, exponent), (weight, exponent)), Fresnel F0.
P_SPECULAR = {"skin": ((0.55, 18.0), (0.45, 90.0), 0.04),
              "eye_l": ((0.3, 60.0), (0.7, 1200.0), 0.06),
              "eye_r": ((0.3, 60.0), (0.7, 1200.0), 0.06),
              "teeth": ((0.6, 30.0), (0.4, 200.0), 0.05),
              "tongue": ((0.5, 30.0), (0.5, 150.0), 0.03),
              "cloth": ((1.0, 6.0), (0.0, 1.0), 0.01)}


def _detail_maps(data) -> dict:
    """Skin maps for P, derived from sss.png once per asset set (cached on ``data``)."""
    cached = data.cache.get("p_detail_maps")
    if cached is not None:
        return cached
    detail = data.skin_maps.detail[..., 0]
    mean = float(detail.mean())
    # Low frequencies at a quarter of the resolution (they are smooth), upsampled.
    up = lambda t: torch.nn.functional.interpolate(  # noqa: E731
        t[None, None], size=detail.shape, mode="bilinear", align_corners=False)[0, 0]
    quarter = torch.nn.functional.avg_pool2d(detail[None, None], 4)[0, 0]
    low = up(sr.gaussian_blur(quarter, 1.5))
    high = detail - low
    flush = ((low - mean) / float(low.std())).clamp(-1.5, 2.5)  # nose, lips, cheeks, ears
    pores = (high / float(high.std())).clamp(-3, 3)  # pores, creases, fine lines
    # A fixed, seeded blotchiness field in texture space (not per identity).
    gen = torch.Generator().manual_seed(20240611)
    noise = torch.zeros_like(detail)
    for res, sigma, amp in ((64, 1.5, 0.6), (256, 2.0, 0.3), (512, 1.25, 0.25)):
        n = sr.gaussian_blur(torch.randn((res, res), generator=gen, dtype=detail.dtype), sigma)
        noise += amp * up(n / float(n.std()))
    maps = {"flush": flush[..., None], "pores": pores[..., None], "mottle": noise[..., None]}
    data.cache["p_detail_maps"] = maps
    return maps


def skin_albedo_p(base_albedo: torch.Tensor, ch: Character, maps: SkinMaps, dmaps: dict,
                  uv: torch.Tensor, pos: torch.Tensor, frame: FaceFrame) -> torch.Tensor:
    """P-style skin colour: the R albedo plus texture detail, flush, mottling, beard shadow."""
    flush = sr.sample_bilinear(dmaps["flush"], uv)
    pores = sr.sample_bilinear(dmaps["pores"], uv)
    mottle = sr.sample_bilinear(dmaps["mottle"], uv)
    a = base_albedo * (1 + 0.07 * pores) * (1 + 0.03 * mottle)
    a = a * (1 + flush.clamp(min=0) * torch.tensor([0.03, -0.02, -0.03], dtype=sr.DTYPE))
    # Beard shadow for the male share (a bluish darkening of chin, jaw and upper lip).
    eyes = (frame.eye_l + frame.eye_r) / 2
    below = ((eyes[1] - frame.eye_radius * 4.0) - pos[:, 1:2]) / (frame.eye_radius * 1.2)
    front = (pos[:, 2:3] - (float(eyes[2]) - 1.1)).clamp(0, 1)
    neck = ((pos[:, 1:2] - (frame.neck_y + 0.1)) / 0.25).clamp(0, 1)
    beard = torch.sigmoid(below * 2) * front * neck * 0.28 * ch.gender
    return a * (1 - beard * torch.tensor([1.0, 0.93, 0.82], dtype=sr.DTYPE))


def shade_p(ch: Character, maps: SkinMaps, frame: FaceFrame, frags: Fragments, data,
            ao: torch.Tensor) -> torch.Tensor:
    """Linear RGB radiance of the covered pixels in the photographic look (style P)."""
    cam = frags.cam
    normal = frags.normal.clone()
    albedo, _, _ = material_albedo(ch, maps, frame, cam, frags, normal)
    albedo = albedo.clone()
    pos, uv, mat_id = frags.pos, frags.uv, frags.mat_id
    dmaps = _detail_maps(data)
    skin = mat_id == MATERIAL_IDS["skin"]
    if skin.any():
        albedo[skin] = skin_albedo_p(albedo[skin], ch, maps, dmaps, uv[skin], pos[skin], frame)
    eyes = (mat_id == MATERIAL_IDS["eye_l"]) | (mat_id == MATERIAL_IDS["eye_r"])
    albedo[eyes] = albedo[eyes] * torch.tensor([0.8, 0.76, 0.72], dtype=sr.DTYPE)  # no paper-white
    eye_pos = torch.tensor(cam.eye, dtype=sr.DTYPE)
    view = eye_pos - pos
    view = view / view.norm(dim=1, keepdim=True)
    normal = torch.where(sr.dot(normal, view) < 0, -normal, normal)
    basis = camera_basis(cam)

    wrap = torch.tensor(P_WRAP["default"], dtype=sr.DTYPE).expand(len(pos), 3).clone()
    wrap[skin] = torch.tensor(P_WRAP["skin"], dtype=sr.DTYPE)
    lobes = torch.zeros(len(pos), 5, dtype=sr.DTYPE)  # w1, n1, w2, n2, f0
    for name, mid in MATERIAL_IDS.items():
        (w1, n1), (w2, n2), f0 = P_SPECULAR[name]
        lobes[mat_id == mid] = torch.tensor([w1, n1, w2, n2, f0], dtype=sr.DTYPE)
    # Pores break up the sheen; the T-zone (forehead, nose) is oilier.
    spec_mask = torch.ones(len(pos), 1, dtype=sr.DTYPE)
    if skin.any():
        pores = sr.sample_bilinear(dmaps["pores"], uv[skin])
        eyes = (frame.eye_l + frame.eye_r) / 2
        dx = (pos[skin, 0:1] - eyes[0]).abs() / (frame.eye_radius * 3.0)
        tzone = torch.exp(-dx ** 2) * 0.8 + 0.5
        spec_mask[skin] = (1 + 0.35 * pores).clamp(0.3, 1.8) * tzone

    ndv = sr.dot(normal, view).clamp(0, 1)
    sky = 0.5 + 0.5 * sr.dot(normal, basis[1:2])
    ambient = (torch.tensor(P_SKY, dtype=sr.DTYPE) * sky
               + torch.tensor(P_GROUND, dtype=sr.DTYPE) * (1 - sky))
    radiance = albedo * ambient * ao
    shadow = frags.shadow if frags.shadow is not None else torch.ones(len(pos), 1, dtype=sr.DTYPE)
    # Cast shadows on the coarse garment mesh stay faint (its folds are not modelled).
    cloth = (mat_id == MATERIAL_IDS["cloth"])[:, None]
    shadow = torch.where(cloth, 0.45 + 0.55 * shadow, shadow)
    # Red light bleeds furthest into the shadow on skin (subsurface scattering).
    soft = torch.where(skin[:, None], shadow ** torch.tensor([0.75, 0.9, 1.0], dtype=sr.DTYPE),
                       shadow.expand(len(pos), 3))
    for light, vis in [(P_KEY, soft)] + [(l, None) for l in P_LIGHTS]:
        d = torch.tensor(light.direction, dtype=sr.DTYPE) @ basis
        d = (d / d.norm()).expand_as(pos)
        rgb = torch.tensor(light.rgb, dtype=sr.DTYPE)
        ndl = sr.dot(normal, d)
        diffuse = ((ndl + wrap) / (1 + wrap)).clamp(min=0) / (1 + wrap)
        half = d + view
        half = half / half.norm(dim=1, keepdim=True).clamp(min=1e-12)
        ndh = sr.dot(normal, half).clamp(min=0)
        vdh = sr.dot(view, half).clamp(0, 1)
        fresnel = lobes[:, 4:5] + (1 - lobes[:, 4:5]) * (1 - vdh) ** 5
        lobe = (lobes[:, 0:1] * (lobes[:, 1:2] + 8) / (8 * math.pi) * ndh ** lobes[:, 1:2]
                + lobes[:, 2:3] * (lobes[:, 3:4] + 8) / (8 * math.pi) * ndh ** lobes[:, 3:4])
        specular = light.spec * fresnel * lobe * ndl.clamp(min=0) * spec_mask
        contrib = albedo * diffuse + specular
        if vis is not None:
            contrib = contrib * vis
        radiance = radiance + rgb * contrib
    # Sheen at grazing angles (fine vellus hair and oil), strongest on skin.
    rim = (1 - ndv) ** 4 * torch.where(skin[:, None], 0.10, 0.03)
    radiance = radiance + rim * albedo.mean(1, keepdim=True) * ao
    return radiance


def background_p(height: int, width: int, seed: int) -> torch.Tensor:
    """A warm, out-of-focus indoor backdrop: soft gradient, blurred lights and shapes."""
    gen = torch.Generator().manual_seed(int(seed))
    r = lambda *shape: torch.rand(*shape, generator=gen, dtype=sr.DTYPE)  # noqa: E731
    palettes = torch.tensor([[[118, 92, 70], [62, 48, 40]],  # warm brown room
                             [[132, 120, 96], [70, 64, 52]],  # beige / olive
                             [[96, 98, 92], [52, 48, 44]],  # dim grey-green
                             [[140, 110, 86], [84, 60, 48]]], dtype=sr.DTYPE)  # tungsten wall
    w = r(len(palettes))
    w = w ** 3 / (w ** 3).sum()
    top, bottom = sr.srgb_to_linear((w[:, None, None] * palettes).sum(0) / 255)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, height, dtype=sr.DTYPE),
                            torch.linspace(0, 1, width, dtype=sr.DTYPE), indexing="ij")
    tilt = (r(1) - 0.5) * 0.6
    t = (yy + tilt * (xx - 0.5)).clamp(0, 1)[..., None]
    img = top * (1 - t) + bottom * t
    # Large soft shapes (furniture, a window), then a few warm out-of-focus lights.
    for _ in range(5):
        cx, cy, rad = r(1), r(1) * 0.8, 0.15 + 0.35 * r(1)
        shade = 0.7 + 0.6 * r(1)
        blob = torch.exp(-(((xx - cx) ** 2 + (yy - cy) ** 2) / rad ** 2))[..., None]
        img = img * (1 + (shade - 1) * blob)
    for _ in range(6):
        cx, cy, rad = r(1), r(1) * 0.6, 0.03 + 0.05 * r(1)
        d2 = ((xx - cx) ** 2 + (yy - cy) ** 2) / rad ** 2
        disc = torch.sigmoid((1 - d2) * 6)[..., None]
        warm = torch.tensor([1.0, 0.78, 0.5], dtype=sr.DTYPE) * (0.05 + 0.12 * r(1))
        img = img + disc * warm
    return img


def aces(x: torch.Tensor) -> torch.Tensor:
    """Narkowicz's fit of the ACES filmic tone curve (a photographic shoulder and toe)."""
    return ((x * (2.51 * x + 0.03)) / (x * (2.43 * x + 0.59) + 0.14)).clamp(0, 1)


def finish_p(image: torch.Tensor, factor: int, seed: int) -> torch.Tensor:
    """Supersampled linear image -> output-size sRGB in [0, 1]: lens, glow, film curve, grain."""
    img = sr.box_downsample(image, factor)
    h, w, _ = img.shape
    img = sr.gaussian_blur(img, 0.35)  # a real lens is never pixel-sharp
    glow = sr.gaussian_blur((img - 0.45).clamp(min=0), 0.02 * h + 0.5)
    img = img + 0.12 * glow
    img = img * torch.tensor([1.06, 1.0, 0.90], dtype=sr.DTYPE) * 0.92  # warm balance, exposure
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h, dtype=sr.DTYPE),
                            torch.linspace(-1, 1, w, dtype=sr.DTYPE), indexing="ij")
    img = img * (1 - 0.22 * (xx ** 2 + yy ** 2) / 2)[..., None]
    lum = (img * torch.tensor([0.2126, 0.7152, 0.0722], dtype=sr.DTYPE)).sum(2, keepdim=True)
    img = lum + 0.88 * (img - lum)  # the film curve below saturates: start a little muted
    out = sr.linear_to_srgb(aces(img))
    # Film/sensor grain: mostly luminance, slightly clumped.
    gen = torch.Generator().manual_seed(int(seed) + 1)
    grain = torch.randn(h, w, 3, generator=gen, dtype=sr.DTYPE)
    grain = sr.gaussian_blur(grain, 0.45)
    lum = grain.mean(2, keepdim=True)
    grain = (lum * 0.9 + (grain - lum) * 0.35) * 0.022
    return (out + grain * (0.6 + 0.4 * out)).clamp(0, 1)
