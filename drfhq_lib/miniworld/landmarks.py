"""The 68 dlib-convention face landmarks of a render, projected from mesh vertices.

``landmark_vertices.json`` (beside this file) names, for each of the 68 iBUG 300-W points,
the hm08 base-mesh vertex that dlib's shape predictor puts it on (found once by
``tools/make_landmark_table.py``: see the note in the file), projected through the render's
camera. Jaw-line points (0-16) are silhouette points in dlib's eyes; they are nevertheless
projected from their fixed table vertices by default, because that measured closer to dlib
(about 3 px at 256 px, table note) than sliding each to the nearest point of the 3D outline
(``silhouette=True``, kept as an option: dlib's jaw line is not the exact occluding contour
and the nearest outline point often lies on a cheek or jaw crease).

Coordinates are in dlib's convention: x right, y down, pixel centres at integers (dlib's
``part(i).x``), in the pixels of the output image.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from drfhq_lib.miniworld import softrender as sr
from drfhq_lib.miniworld.assets import AnnyData
from drfhq_lib.miniworld.errors import LandmarkTableError

TABLE_PATH = Path(__file__).with_name("landmark_vertices.json")
N_LANDMARKS = 68
JAW = tuple(range(17))
# A jaw point slides to the nearest point of the outline within SILHOUETTE_RADIUS (dm) of its
# table vertex.
SILHOUETTE_RADIUS = 0.3


@dataclasses.dataclass(frozen=True)
class LandmarkTable:
    vertices: torch.Tensor  # (68,) long, hm08 vertex ids
    silhouette: tuple[int, ...]  # landmark ids projected as silhouette points


def load_table(path: Path | None = None) -> LandmarkTable:
    path = Path(path or TABLE_PATH)
    try:
        doc = json.loads(path.read_text())
        verts = [int(v) for v in doc["vertices"]]
        silhouette = tuple(int(i) for i in doc.get("silhouette", JAW))
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise LandmarkTableError(f"{path}: not a readable landmark table ({err}); regenerate it "
                                 f"with tools/make_landmark_table.py") from None
    if len(verts) != N_LANDMARKS:
        raise LandmarkTableError(f"{path}: {len(verts)} vertices, expected {N_LANDMARKS}; "
                                 f"regenerate it with tools/make_landmark_table.py")
    return LandmarkTable(torch.tensor(verts), silhouette)


def _table(data: AnnyData) -> LandmarkTable:
    table = data.cache.get("landmark_table")
    if table is None:
        table = data.cache["landmark_table"] = load_table()
    return table


def jaw_edges(data: AnnyData, table: LandmarkTable) -> list[torch.Tensor]:
    """Per silhouette landmark: the skin mesh edges (E, 2) near its table vertex (cached)."""
    key = ("jaw_edges", tuple(table.vertices.tolist()), table.silhouette)
    cached = data.cache.get(key)
    if cached is not None:
        return cached
    mesh = data.mesh
    tris = mesh.tris[mesh.group_mask("body")]
    edges = torch.cat([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]])
    edges = torch.unique(torch.sort(edges, dim=1).values, dim=0)
    base = mesh.verts
    out = []
    for j in table.silhouette:
        anchor = base[table.vertices[j]]
        near = ((base[edges] - anchor).norm(dim=2) < SILHOUETTE_RADIUS).all(1)
        out.append(edges[near])
    data.cache[key] = out
    return out


def silhouette_point(verts: torch.Tensor, normals: torch.Tensor, cam: sr.Camera,
                     edges: torch.Tensor, anchor: int) -> torch.Tensor:
    """The point of the outline nearest to the anchor vertex, or the anchor itself.

    The outline crosses the mesh edges whose ends face the camera (n.v > 0) and away from it
    (n.v <= 0); each crossing is interpolated to n.v = 0, and the nearest (in 3D) is taken.
    """
    eye = torch.tensor(cam.eye, dtype=verts.dtype)
    p = verts[edges]  # (E, 2, 3)
    view = eye - p
    s = (normals[edges] * view).sum(2) / view.norm(dim=2)
    cross = (s[:, 0] > 0) != (s[:, 1] > 0)
    if not cross.any():
        return verts[anchor]
    p, s = p[cross], s[cross]
    t = (s[:, 0] / (s[:, 0] - s[:, 1]))[:, None]
    points = p[:, 0] + t * (p[:, 1] - p[:, 0])
    return points[torch.argmin((points - verts[anchor]).norm(dim=1))]


def project_landmarks(scene, data: AnnyData, cam: sr.Camera, silhouette: bool = False,
                      table: LandmarkTable | None = None) -> np.ndarray:
    """(68, 2) float64 dlib-convention pixel coordinates of a scene's landmarks in ``cam``."""
    table = table or _table(data)
    points = scene.verts[table.vertices].clone()
    if silhouette:
        for j, edges in zip(table.silhouette, jaw_edges(data, table)):
            if len(edges):
                points[j] = silhouette_point(scene.verts, scene.normals, cam, edges,
                                             int(table.vertices[j]))
    xy, _ = sr.project_to_pixels(points, cam)
    return (xy - 0.5).numpy()
