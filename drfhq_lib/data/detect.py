"""Finding and placing faces on renders: a detector cascade, box conversion, a face mesh.

dlib's HOG detector misses many rendered faces (turned heads, strong light, stylised skin);
the MMOD CNN detector finds them, but its boxes are not the boxes the 68-point predictor was
trained on (iBUG 300-W boxes from the HOG detector), and the predictor fed them lands far off.
This module:

* **cascade** (:func:`detect_face`): HOG first; where HOG finds nothing, MMOD, whose box is
  converted into a HOG-like box (:func:`hog_like_box`, an affine map fitted on mini-world
  renders where both detectors fire: ``tools/fit_align_boxes.py``); dlib's 68-point predictor
  then places the points from that box.
* **face mesh** (:func:`facemesh_landmarks`): MediaPipe's 468-point face mesh network
  (:mod:`drfhq_lib.nets.facemesh`), seeded by dlib's points (their box, also turned by
  +-30 and +-60 degrees, the surest mesh kept) and then by its own (MediaPipe's tracking rule:
  the box of the points, 1.5 times larger, turned to level the eye corners);
  its points are mapped onto the 68 iBUG points (:data:`MESH_TO_IBUG68`). Measured against
  ground-truth landmarks it places the FFHQ quad far better than dlib on renders
  (``benchmarks/bench_align.py``), so the cascade uses it by default.

Images are RGB uint8 arrays ``[H, W, 3]``; points are (x, y) pixels with pixel centres at
integers (dlib's convention, as in :mod:`drfhq_lib.data.landmarks`).
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from PIL import Image

from drfhq_lib.data.align import (DETECT_MAX_SIDE, Alignment, _as_rgb_image, align_face,
                                  detect_landmarks, ffhq_quad)
from drfhq_lib.data.images import DEFAULT_MAX_PIXELS
from drfhq_lib.data.landmarks import Face, landmarks_in_box
from drfhq_lib.errors import NoFaceError

Detector = Literal["hog", "mmod", "cascade"]
Landmarker = Literal["dlib", "facemesh"]
DETECTORS = ("cascade", "hog", "mmod")
LANDMARKERS = ("facemesh", "dlib")

# ----------------------------------------------------------------------------- box conversion
# Fitted by tools/fit_align_boxes.py on mini-world renders (never on the evaluation renders);
# its printout gives these numbers and their residuals.
#: MMOD box -> HOG-like box: centre shift (x, y) in units of the MMOD box side, and the side
#: ratio. ``hog = (cx + dx * s, cy + dy * s, side * s)`` with (cx, cy, s) the MMOD box.
MMOD_TO_HOG = (0.0633, 0.0928, 1.0986)


def _box(cx: float, cy: float, side: float) -> tuple[int, int, int, int]:
    """The integer square box (left, top, right, bottom) of centre (cx, cy) and ``side``, with
    dlib's convention (right = left + side - 1)."""
    left, top = int(round(cx - (side - 1) / 2)), int(round(cy - (side - 1) / 2))
    side = int(round(side))
    return left, top, left + side - 1, top + side - 1


def _centre_side(box) -> tuple[float, float, float]:
    left, top, right, bottom = box
    return (left + right) / 2, (top + bottom) / 2, ((right - left + 1) + (bottom - top + 1)) / 2


def hog_like_box(mmod_box, coefficients=MMOD_TO_HOG) -> tuple[int, int, int, int]:
    """The HOG-like box of an MMOD box (left, top, right, bottom), by :data:`MMOD_TO_HOG`."""
    dx, dy, scale = coefficients
    cx, cy, side = _centre_side(mmod_box)
    return _box(cx + dx * side, cy + dy * side, side * scale)


# ----------------------------------------------------------------------------- face mesh

#: For each iBUG 68 point, the MediaPipe face mesh points whose mean stands for it (the
#: correspondence commonly used with the 468-point mesh; eye corners 33/133 and 362/263,
#: eyelids 160/158/153/144 and 385/387/373/380, outer mouth corners 61 and 291).
MESH_TO_IBUG68: tuple[tuple[int, ...], ...] = (
    (127,), (234,), (93,), (132, 58), (58, 172), (136,), (150,), (176,), (152,), (400,),
    (379,), (365,), (397, 288), (361,), (323,), (454,), (356,),  # jaw 0-16
    (70,), (63,), (105,), (66,), (107,),  # right brow 17-21
    (336,), (296,), (334,), (293,), (300,),  # left brow 22-26
    (168, 6), (197, 195), (5,), (4,), (75,), (97,), (2,), (326,), (305,),  # nose 27-35
    (33,), (160,), (158,), (133,), (153,), (144,),  # right eye 36-41
    (362,), (385,), (387,), (263,), (373,), (380,),  # left eye 42-47
    (61,), (39,), (37,), (0,), (267,), (269,), (291,),  # outer lip, top 48-54
    (321,), (314,), (17,), (84,), (91,),  # outer lip, bottom 55-59
    (78,), (82,), (13,), (312,), (308,), (317,), (14,), (87,),  # inner lip 60-67
)
#: The mesh's eye corners MediaPipe turns its box by (right eye outer, left eye outer).
MESH_EYE_CORNERS = (33, 263)
#: MediaPipe's box rule for the face mesh: 1.5 times the points' box, made square.
MESH_BOX_SCALE = 1.5
#: Face presence below this probability (sigmoid of the network's logit): no face.
MESH_MIN_PRESENCE = 0.5


def mesh_to_ibug68(mesh: np.ndarray) -> np.ndarray:
    """68 iBUG points (x, y) from the 468 face mesh points, by :data:`MESH_TO_IBUG68`."""
    mesh = np.asarray(mesh, np.float64)[:, :2]
    return np.array([mesh[list(ids)].mean(0) for ids in MESH_TO_IBUG68])


@dataclass(frozen=True)
class Roi:
    """A turned square of the picture: centre (x, y) in pixels, side, angle (radians)."""

    cx: float
    cy: float
    side: float
    angle: float

    def crop_to_picture(self, size: int) -> np.ndarray:
        """2x3 matrix: crop edge coordinates (0..size) -> picture edge coordinates."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        k = self.side / size
        # picture = centre_edges + R @ (crop - size / 2) * k, with centre_edges = centre + 0.5
        return np.array([[c * k, -s * k, self.cx + 0.5 - (c - s) * self.side / 2],
                         [s * k, c * k, self.cy + 0.5 - (s + c) * self.side / 2]])


def roi_from_points(points: np.ndarray, corners: tuple[int, int], scale: float = MESH_BOX_SCALE
                    ) -> Roi:
    """MediaPipe's box from landmarks: centre of their (axis-aligned) box, side ``scale`` times
    its longer side, turned so the line ``corners[0] -> corners[1]`` is level."""
    points = np.asarray(points, np.float64)[:, :2]
    low, high = points.min(0), points.max(0)
    start, end = points[corners[0]], points[corners[1]]
    angle = math.atan2(end[1] - start[1], end[0] - start[0])
    centre = (low + high) / 2
    return Roi(float(centre[0]), float(centre[1]), float(max(high - low) * scale), angle)


def crop(picture: Image.Image, roi: Roi, size: int) -> np.ndarray:
    """The ``size`` square RGB crop of ``roi`` (bilinear, black outside the picture)."""
    matrix = roi.crop_to_picture(size)
    return np.asarray(picture.transform((size, size), Image.Transform.AFFINE,
                                        tuple(matrix.ravel()), Image.Resampling.BILINEAR))


def _mesh_pass(net, picture: Image.Image, roi: Roi, device) -> tuple[np.ndarray, float]:
    """The mesh in ``roi``: ``(468 points [x, y, z] in the picture, presence)``."""
    from drfhq_lib.nets.facemesh import INPUT_SIZE

    pixels = crop(picture, roi, INPUT_SIZE)
    x = torch.from_numpy(pixels.copy()).to(device).permute(2, 0, 1)[None].float() / 255.0
    with torch.no_grad():
        points, logit = net(x)
    points = points[0].double().cpu().numpy()
    matrix = roi.crop_to_picture(INPUT_SIZE)
    xy = points[:, :2] @ matrix[:, :2].T + matrix[:, 2] - 0.5  # edges -> pixel centres
    z = points[:, 2:] * roi.side / INPUT_SIZE
    return np.hstack([xy, z]), float(torch.sigmoid(logit[0]))


def roi_from_ibug68(landmarks: np.ndarray) -> Roi:
    """A first face mesh box from 68 iBUG points: the 68 points span brows to chin, the mesh
    reaches up to the forehead, so the box of the 68 points is raised by a tenth of its height
    (along the face) before MediaPipe's rule is applied."""
    lm = np.asarray(landmarks, np.float64)
    roi = roi_from_points(lm, (36, 45))
    height = lm[:, 1].max() - lm[:, 1].min()
    shift = 0.1 * height
    return Roi(roi.cx + shift * math.sin(roi.angle), roi.cy - shift * math.cos(roi.angle),
               roi.side * 1.1, roi.angle)


#: The first face mesh pass also tries the seed's box turned by these angles (degrees) and
#: keeps the one the mesh is surest of: dlib's points, and so their angle, are unreliable on
#: faces turned far in the picture.
SEED_TURNS = (0.0, -30.0, 30.0, -60.0, 60.0)


def facemesh_landmarks(rgb: np.ndarray, seed: np.ndarray, *, passes: int = 3,
                       turns=SEED_TURNS, device="cpu", net=None
                       ) -> tuple[np.ndarray, np.ndarray, float]:
    """Face mesh points from a first guess ``seed`` (68 iBUG points): ``(68 points, 468 mesh
    points [x, y, z], face presence probability)``. The first pass runs in the box of the seed
    (:func:`roi_from_ibug68`) turned by each of ``turns`` and keeps the surest mesh; each later
    pass runs in MediaPipe's box of the previous mesh."""
    if net is None:
        from drfhq_lib.nets.facemesh import build_facemesh

        net = build_facemesh(device)
    picture = Image.fromarray(np.ascontiguousarray(rgb))
    start = roi_from_ibug68(seed)
    tries = [_mesh_pass(net, picture, dataclasses.replace(
        start, angle=start.angle + math.radians(t)), device) for t in (turns or (0.0,))]
    mesh, presence = max(tries, key=lambda t: t[1])
    for _ in range(max(1, passes) - 1):
        mesh, presence = _mesh_pass(net, picture, roi_from_points(mesh, MESH_EYE_CORNERS),
                                    device)
    return mesh_to_ibug68(mesh), mesh, presence


# ----------------------------------------------------------------------------- accuracy

def quad_error(landmarks: np.ndarray, true_landmarks: np.ndarray) -> float:
    """How far the FFHQ quad of ``landmarks`` is from the quad of ``true_landmarks``: the
    largest distance between corresponding corners, as a fraction of the true quad's side."""
    quad, _ = ffhq_quad(np.asarray(landmarks, np.float64)[:68])
    true, side = ffhq_quad(np.asarray(true_landmarks, np.float64)[:68])
    return float(np.hypot(*(quad - true).T).max() / side)


# ----------------------------------------------------------------------------- the cascade

@dataclass
class FaceFit:
    """The face a :func:`detect_face` call placed, and how.

    ``landmarks``: [68, 2] iBUG points. ``box``: the box the predictor started from (HOG or
    HOG-like), ``faces``: every face of the stage that found one, in that detector's boxes,
    largest first. ``detector``: the stage that found it ('hog' or 'mmod').
    ``landmarker``: 'dlib' or 'facemesh'; ``mesh``: the 468 mesh points (facemesh only),
    ``presence``: the mesh's face probability.
    """

    landmarks: np.ndarray
    box: tuple[int, int, int, int]
    faces: list[Face]
    detector: str
    landmarker: str
    mesh: np.ndarray | None = None
    presence: float | None = None
    stages: list[str] = field(default_factory=list)

    @property
    def method(self) -> str:
        return f"{self.detector}+{self.landmarker}"


def alignment_networks(detector: Detector, landmarker: Landmarker) -> list[str]:
    """Registry names of the network files an alignment with ``detector`` and ``landmarker``
    reads (dlib's 68 points seed the mesh too)."""
    return (["dlib-landmarks68"] + (["dlib-mmod-detector"] if detector in ("cascade", "mmod")
                                    else [])
            + (["mediapipe-face-mesh"] if landmarker == "facemesh" else []))


def detect_face(rgb: np.ndarray, detector: Detector = "cascade",
                landmarker: Landmarker = "facemesh", *, upsample: int = 1,
                detect_max_side: int | None = DETECT_MAX_SIDE, device="cpu") -> FaceFit:
    """Find the largest face and place its 68 landmarks.

    ``detector``: 'cascade' (HOG, then MMOD with its box converted, :func:`hog_like_box`),
    'hog' or 'mmod' alone (MMOD's box is converted too). ``landmarker``: 'dlib' (the 68-point
    predictor from that box) or 'facemesh' (MediaPipe's mesh seeded by dlib's
    points, :func:`facemesh_landmarks`). Raises NoFaceError when no stage finds a
    face (or the mesh says there is none); MissingWeightsError when a network file is missing.
    """
    if detector not in DETECTORS:
        raise ValueError(f"detector must be one of {', '.join(DETECTORS)}, not {detector!r}")
    if landmarker not in LANDMARKERS:
        raise ValueError(f"landmarker must be one of {', '.join(LANDMARKERS)}, not "
                         f"{landmarker!r}")
    rgb = np.ascontiguousarray(rgb)
    stages = ["hog", "mmod"] if detector == "cascade" else [detector]
    tried = []
    for stage in stages:
        tried.append(stage)
        _, faces = detect_landmarks(rgb, stage, upsample, detect_max_side)
        if not faces:
            continue
        box = faces[0].box if stage == "hog" else hog_like_box(faces[0].box)
        lm = landmarks_in_box(rgb, box)
        fit = FaceFit(lm, box, faces, stage, "dlib", stages=list(tried))
        if landmarker == "dlib":
            return fit
        lm68, mesh, presence = facemesh_landmarks(rgb, lm, device=device)
        if presence >= MESH_MIN_PRESENCE:
            return FaceFit(lm68, box, faces, stage, "facemesh", mesh, presence, list(tried))
    height, width = rgb.shape[:2]
    raise NoFaceError(f"no face found in the {width}x{height} image by dlib's "
                      f"{' then '.join(tried)} detector" + ("" if detector == "cascade" else
                      "; try detector='cascade' (HOG, then the MMOD CNN)"))


def align_detected(image, size: int = 1024, detector: Detector = "cascade",
                   landmarker: Landmarker = "facemesh", *, min_face: float = 0.0,
                   upsample: int = 1, detect_max_side: int | None = DETECT_MAX_SIDE,
                   max_pixels: int | None = DEFAULT_MAX_PIXELS, name: str | None = None,
                   device="cpu", **align_options) -> Alignment:
    """:func:`~drfhq_lib.data.align.align_face` with the face placed by :func:`detect_face`.

    ``image`` is anything ``align_face`` takes; other keyword arguments (``transform_size``,
    ``enable_padding``) go to it. The :class:`~drfhq_lib.data.align.Alignment` records the
    faces found, the box the landmarks came from and the method ('cascade:mmod+facemesh':
    the cascade found the face at its MMOD stage and the mesh placed it). 'hog' or 'mmod'
    with 'dlib' is the FFHQ recipe as published: ``align_face`` with that detector.
    """
    if landmarker == "dlib" and detector in ("hog", "mmod"):
        return align_face(image, size, detector=detector, min_face=min_face, upsample=upsample,
                          detect_max_side=detect_max_side, max_pixels=max_pixels, name=name,
                          **align_options)
    picture, label = _as_rgb_image(image, max_pixels, name)
    try:
        fit = detect_face(np.asarray(picture), detector, landmarker, upsample=upsample,
                          detect_max_side=detect_max_side, device=device)
    except NoFaceError as err:
        raise NoFaceError(f"{label}: {err}") from None
    result = align_face(picture, size, landmarks=fit.landmarks, min_face=min_face, name=label,
                        **align_options)
    return dataclasses.replace(
        result, faces_found=len(fit.faces), face_box=fit.box,
        face_boxes=[f.box for f in fit.faces],
        detector=(f"cascade:{fit.method}" if detector == "cascade" else fit.method),
        source=str(image) if isinstance(image, (str, os.PathLike)) else None)
