"""dlib face detection and 68-point landmarks (the detector and predictor FFHQ was aligned with).

Images here are RGB uint8 arrays ``[H, W, 3]`` (dlib's own format); landmarks are float64
``[68, 2]`` arrays of (x, y) pixel coordinates in the iBUG 300-W order.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np

from drfhq_lib.nets import weights
from drfhq_lib.errors import NoFaceError

Detector = Literal["hog", "mmod"]


@dataclass(frozen=True)
class Face:
    box: tuple[int, int, int, int]  # left, top, right, bottom
    score: float

    @property
    def area(self) -> int:
        left, top, right, bottom = self.box
        return max(0, right - left) * max(0, bottom - top)


@lru_cache(maxsize=None)
def _hog_detector():
    import dlib

    return dlib.get_frontal_face_detector()


@lru_cache(maxsize=None)
def _mmod_detector(path: str):
    import dlib

    return dlib.cnn_face_detection_model_v1(path)


@lru_cache(maxsize=None)
def shape_predictor(path: str | None = None):
    """The 68-point predictor (the registry's official file unless ``path`` is given)."""
    import dlib

    return dlib.shape_predictor(path or str(weights.official_path("dlib-landmarks68")))


def _as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 array [H, W, 3], got {image.dtype} {image.shape}")
    return np.ascontiguousarray(image)


def detect_faces(image: np.ndarray, detector: Detector = "hog", upsample: int = 1) -> list[Face]:
    """All faces dlib finds, largest first."""
    image = _as_rgb_uint8(image)
    if detector == "hog":
        rects, scores, _ = _hog_detector().run(image, upsample, 0.0)
        faces = [Face((r.left(), r.top(), r.right(), r.bottom()), float(s))
                 for r, s in zip(rects, scores)]
    elif detector == "mmod":
        found = _mmod_detector(str(weights.official_path("dlib-mmod-detector")))(image, upsample)
        faces = [Face((d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom()),
                      float(d.confidence)) for d in found]
    else:
        raise ValueError(f"detector must be 'hog' or 'mmod', not {detector!r}")
    return sorted(faces, key=lambda f: f.area, reverse=True)


def landmarks_in_box(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """68 landmarks of the face inside ``box`` (left, top, right, bottom)."""
    import dlib

    shape = shape_predictor()(_as_rgb_uint8(image), dlib.rectangle(*map(int, box)))
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


def face_landmarks(image: np.ndarray, detector: Detector = "hog",
                   upsample: int = 1) -> tuple[np.ndarray, list[Face]]:
    """Landmarks of the largest face, and every face found (so callers can report extras).

    Raises NoFaceError when dlib finds no face.
    """
    faces = detect_faces(image, detector, upsample)
    if not faces:
        raise NoFaceError(f"dlib's {detector} detector found no face "
                          f"(image {image.shape[1]}x{image.shape[0]})")
    return landmarks_in_box(image, faces[0].box), faces
