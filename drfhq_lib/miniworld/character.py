"""Characters: MakeHuman macro and face modifiers -> target weights -> vertices, and cameras.

A :class:`Character` is a plain record of parameters (gender, age, ethnic mix, face modifiers,
colours, camera yaw/pitch). ``morphed_vertices`` applies the MakeHuman shape targets the way
MakeHuman's sliders weight them; ``face_frame`` finds the eyes, mouth and neck on the result;
``portrait_camera`` frames head and shoulders like samples/renders/*_portrait.png.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import torch

from drfhq_lib.miniworld import softrender as sr
from drfhq_lib.miniworld.assets import AnnyData, Mesh


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
    pitch_deg: float = 4.0  # camera elevation (the sample portraits use 4)
    noise_seed: int = 0  # per-image nuisance (P-style grain and backdrop); not the identity


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
    age = pairwise_weights(age_macro_value(ch.age_years),
                           [(0, "baby"), (0.1875, "child"), (0.5, "young"), (1, "old")])
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


_PAIRS = (("incr", "decr"), ("up", "down"), ("out", "in"), ("convex", "concave"),
          ("forward", "backward"))


def face_target_weights(ch: Character, data: AnnyData) -> dict[str, float]:
    """Weights of the face targets: 'x/name' = v picks name-incr/decr (or l-/r- pairs)."""
    out = {}
    for key, value in ch.face.items():
        folder, name = key.split("/")
        sided = any(data.exists(f"targets/{folder}/l-{name}-{pos}.target.gz") for pos, _ in _PAIRS)
        for side in (["l-", "r-"] if sided else [""]):
            for pos, neg in _PAIRS:
                if data.exists(f"targets/{folder}/{side}{name}-{pos}.target.gz"):
                    if abs(value) > 0:
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
        if share > 0 and w != 0
    }


def character_target_weights(ch: Character, data: AnnyData) -> dict[str, float]:
    return {**macro_target_weights(ch), **face_target_weights(ch, data),
            **expression_target_weights(ch)}


def morphed_vertices(ch: Character, data: AnnyData) -> torch.Tensor:
    """Base mesh vertices plus the weighted sum of the character's target offsets."""
    verts = data.mesh.verts.clone()
    for path, w in sorted(character_target_weights(ch, data).items()):
        idx, delta = data.target(path)
        verts.index_add_(0, idx, w * delta)
    return verts


# ---------------------------------------------------------------------------
# Where the face is, the garment, cameras.
# ---------------------------------------------------------------------------


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
    return torch.sparse_coo_tensor(edges.T, values, (n_verts, n_verts),
                                   check_invariants=True).coalesce()


TAUBIN_STEPS = 60
TAUBIN_FACTORS = (0.5, -0.53)
CLOTH_OFFSET = 0.06  # dm pushed out along the normals


def _cloth_operator(mesh: Mesh, n_verts: int):
    """(cloth vertex ids, cloth triangles, their averaging operator as CSR on those ids)."""
    cloth_tris = mesh.tris[mesh.group_mask("helper-tights")]
    idx = torch.unique(cloth_tris)
    local = torch.full((n_verts,), -1, dtype=torch.long)
    local[idx] = torch.arange(len(idx))
    with warnings.catch_warnings():  # "sparse CSR support is in beta": CSR @ dense is stable
        warnings.simplefilter("ignore", UserWarning)
        avg = vertex_neighbours(local[cloth_tris], len(idx)).to_sparse_csr()
    return idx, cloth_tris, avg


def clothed_vertices(mesh: Mesh, verts: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
    """Vertices with the tights shell smoothed and loosened so it reads as a garment.

    The tights helper hugs every body detail; Taubin smoothing (which does not
    shrink) removes anatomy and a small push along the normals keeps the skin
    from poking through. The smoothing runs on the garment's own vertices (its
    neighbours are all garment vertices), with the operator cached in ``cache``.
    """
    key = ("cloth_operator", len(verts))
    op = cache.get(key) if cache is not None else None
    if op is None:
        op = _cloth_operator(mesh, len(verts))
        if cache is not None:
            cache[key] = op
    idx, cloth_tris, avg = op
    y = verts[idx]
    for _ in range(TAUBIN_STEPS):
        for factor in TAUBIN_FACTORS:
            y = y + factor * (avg @ y - y)
    x = verts.clone()
    x[idx] = y
    normals = sr.vertex_normals(x, cloth_tris)
    x[idx] = x[idx] + CLOTH_OFFSET * normals[idx]
    return x


def orbit_camera(target: torch.Tensor, distance: float, yaw_deg: float, pitch_deg: float,
                 vfov_deg: float, width: int, height: int, aim_offset=(0.0, 0.0, 0.0)) -> sr.Camera:
    """Camera on a sphere around ``target`` (yaw about y, positive = character's left)."""
    yaw, pitch = math.radians(yaw_deg), math.radians(pitch_deg)
    t = target + torch.tensor(aim_offset, dtype=sr.DTYPE)
    offset = distance * torch.tensor(
        [math.sin(yaw) * math.cos(pitch), math.sin(pitch), math.cos(yaw) * math.cos(pitch)],
        dtype=sr.DTYPE)
    eye = t + offset
    return sr.Camera(tuple(eye.tolist()), tuple(t.tolist()), vfov_deg, width, height)


def portrait_camera(frame: FaceFrame, yaw_deg: float, size: int = 512,
                    pitch_deg: float = 4.0) -> sr.Camera:
    """Head and shoulders in a square frame, as samples/renders/*_portrait.png."""
    # 0.9 m away with a 26 degree field of view: the face (~2.3 dm) fills about 45% of the
    # frame height.
    return orbit_camera(frame.centre, 9.0, yaw_deg, pitch_deg, 26.0, size, size,
                        aim_offset=(0.0, -0.35, 0.0))


def body_camera(frame: FaceFrame, yaw_deg: float) -> sr.Camera:
    # Knees-up framing in a tall 512x768 frame; dlib's face box is ~75 px, well above its
    # ~40 px floor.
    return orbit_camera(frame.centre, 34.0, yaw_deg, 3.0, 24.0, 512, 768,
                        aim_offset=(0.0, -4.6, 0.0))
