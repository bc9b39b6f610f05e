"""FFHQ face alignment (how FFHQ, and the paper's DRFHQ, were cropped) and its inverse.

``align_face`` finds the face with dlib (frontal HOG detector, or the MMOD CNN detector) and its
68 landmarks, then crops the oriented square that NVIDIA's FFHQ recipe
(``recreate_aligned_images`` in NVlabs/ffhq-dataset ``download_ffhq.py``) derives from the eye
and mouth centres. Every numerical step of that recipe is reproduced in the same order with the
same types (shrink, crop with border, reflect padding with its blurred blend, quad transform at
4096 px, Lanczos resize), so for the same landmarks the output equals the recipe's.

``paste_back`` is the inverse: it warps an image of the aligned square (and a mask) back onto
the original picture and composites them (Sec. 8 of the paper pastes the result back this way).

Coordinates: pixel-index coordinates throughout, pixel (i, j) has its centre at x=i, y=j (dlib's
and the recipe's convention). ``quad`` holds the crop's corners in the order of the recipe:
top-left, bottom-left, bottom-right, top-right (as seen in the aligned image).

This module only computes (an image in, an image and its quad out); aligning a folder into
files, with sidecars and a manifest, is :mod:`drfhq_lib.data.align_job`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np
import scipy.ndimage
from PIL import Image

from drfhq_lib.data.images import DEFAULT_MAX_PIXELS, load_image, tensor_to_pil, to_rgb
from drfhq_lib.errors import BadImageError, NoFaceError
from drfhq_lib.data.landmarks import Face, detect_faces, landmarks_in_box

#: Size of the intermediate square of the FFHQ recipe (quad transform, then Lanczos resize).
TRANSFORM_SIZE = 4096
#: Faces are detected on a copy no larger than this (landmarks use the full image): dlib's HOG
#: pyramid on a 4000 px photo takes seconds and finds nothing a 1024 px copy would miss at the
#: face sizes a 1024 px dataset needs.
DETECT_MAX_SIDE = 1024


class FaceTooSmallError(NoFaceError):
    """A face was found but it is smaller than the requested minimum (``min_face``)."""


# ----------------------------------------------------------------------------- the FFHQ recipe

def ffhq_quad(landmarks: np.ndarray) -> tuple[np.ndarray, np.floating]:
    """The recipe's oriented crop square from 68 iBUG landmarks: ``(quad [4, 2], qsize)``.

    The square is centred slightly below the eyes (a tenth of the eye-to-mouth vector), turned so
    the eyes are level, and its half side is the larger of twice the eye distance and 1.8 times
    the eye-to-mouth distance.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    eye_left = np.mean(lm[36:42], axis=0)
    eye_right = np.mean(lm[42:48], axis=0)
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    mouth_avg = (lm[48] + lm[54]) * 0.5  # outer mouth corners
    eye_to_mouth = mouth_avg - eye_avg

    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]  # "right", averaged from eyes and mouth
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]  # "down": x turned by 90 degrees
    centre = eye_avg + eye_to_mouth * 0.1
    quad = np.stack([centre - x - y, centre - x + y, centre + x + y, centre + x - y])
    qsize = np.hypot(*x) * 2
    return quad, qsize


def _quad_bounds(quad: np.ndarray) -> tuple[int, int, int, int]:
    """Integer bounding box (left, top, right, bottom) of a quad, rounded outwards."""
    return (int(np.floor(min(quad[:, 0]))), int(np.floor(min(quad[:, 1]))),
            int(np.ceil(max(quad[:, 0]))), int(np.ceil(max(quad[:, 1]))))


def _shrunk(img: Image.Image, quad: np.ndarray, qsize, output_size: int):
    """Halve (or more) a picture much larger than the output before cropping, as the recipe
    does: an integer factor, Lanczos ('ANTIALIAS' in old Pillow)."""
    shrink = int(np.floor(qsize / output_size * 0.5))
    if shrink > 1:
        rsize = (int(np.rint(float(img.size[0]) / shrink)),
                 int(np.rint(float(img.size[1]) / shrink)))
        img = img.resize(rsize, Image.Resampling.LANCZOS)
        quad = quad / shrink
        qsize = qsize / shrink
    return img, quad, qsize


def _cropped(img: Image.Image, quad: np.ndarray, border: int):
    """Crop to the quad's bounding box plus ``border`` (clipped to the picture)."""
    left, top, right, bottom = _quad_bounds(quad)
    crop = (max(left - border, 0), max(top - border, 0),
            min(right + border, img.size[0]), min(bottom + border, img.size[1]))
    if crop[2] - crop[0] < img.size[0] or crop[3] - crop[1] < img.size[1]:
        img = img.crop(crop)
        quad = quad - crop[0:2]
    return img, quad


def _padded(img: Image.Image, quad: np.ndarray, qsize, border: int):
    """Where the quad leaves the picture: reflect-pad, blur towards the padded edge and fade to
    the median colour (the recipe's soft fill, float32 as in the recipe)."""
    left, top, right, bottom = _quad_bounds(quad)
    pad = (max(-left + border, 0), max(-top + border, 0),
           max(right - img.size[0] + border, 0), max(bottom - img.size[1] + border, 0))
    if not max(pad) > border - 4:
        return img, quad
    pad = np.maximum(pad, int(np.rint(qsize * 0.3)))
    arr = np.pad(np.float32(img), ((pad[1], pad[3]), (pad[0], pad[2]), (0, 0)), "reflect")
    h, w, _ = arr.shape
    rows, cols, _ = np.ogrid[:h, :w, :1]
    # 0 inside the original picture, rising to 1 at the outer edge of the padding.
    mask = np.maximum(1.0 - np.minimum(np.float32(cols) / pad[0], np.float32(w - 1 - cols) / pad[2]),
                      1.0 - np.minimum(np.float32(rows) / pad[1], np.float32(h - 1 - rows) / pad[3]))
    blur = qsize * 0.02
    arr += (scipy.ndimage.gaussian_filter(arr, [blur, blur, 0]) - arr) \
        * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
    arr += (np.median(arr, axis=(0, 1)) - arr) * np.clip(mask, 0.0, 1.0)
    img = Image.fromarray(np.uint8(np.clip(np.rint(arr), 0, 255)))
    quad = quad + pad[:2]
    return img, quad


def ffhq_align(img: Image.Image, landmarks: np.ndarray, output_size: int = 1024,
               transform_size: int = TRANSFORM_SIZE,
               enable_padding: bool = True) -> tuple[Image.Image, np.ndarray]:
    """The FFHQ recipe on an RGB picture and its landmarks: ``(aligned image, quad)``.

    ``quad`` is in the coordinates of ``img`` (before the recipe's shrink/crop/pad). The output
    is ``min(output_size, transform_size)`` pixels square, as in the recipe.
    """
    quad, qsize = ffhq_quad(landmarks)
    original_quad = quad.copy()
    img, quad, qsize = _shrunk(img, quad, qsize, output_size)
    border = max(int(np.rint(qsize * 0.1)), 3)
    img, quad = _cropped(img, quad, border)
    if enable_padding:
        img, quad = _padded(img, quad, qsize, border)
    # PIL's QUAD maps output pixel edges to input pixel edges: +0.5 turns centres into edges.
    img = img.transform((transform_size, transform_size), Image.Transform.QUAD,
                        (quad + 0.5).flatten(), Image.Resampling.BILINEAR)
    if output_size < transform_size:
        img = img.resize((output_size, output_size), Image.Resampling.LANCZOS)
    return img, original_quad


# ----------------------------------------------------------------------------- transforms

def perspective_matrix(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """3x3 projective matrix taking the four points ``src`` to the four points ``dst``."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    rows, rhs = [], []
    for (x, y), (u, v) in zip(src, dst):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs += [u, v]
    h = np.linalg.solve(np.array(rows), np.array(rhs))
    return np.append(h, 1.0).reshape(3, 3)


def _square_edges(width: int, height: int) -> np.ndarray:
    """Corners of a width x height picture in edge coordinates, in quad order."""
    return np.array([[0, 0], [0, height], [width, height], [width, 0]], dtype=np.float64)


def original_to_aligned(quad: np.ndarray, size: int) -> np.ndarray:
    """3x3 matrix: original pixel coordinates -> aligned pixel coordinates (``size`` square).

    The recipe samples the aligned picture so that the quad's corners (as pixel edges: +0.5)
    land on the aligned picture's outer edges; the Lanczos resize keeps edges in place.
    """
    to_edges = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])
    from_edges = np.array([[1, 0, -0.5], [0, 1, -0.5], [0, 0, 1]])
    quad_edges = np.asarray(quad, np.float64) + 0.5
    return from_edges @ perspective_matrix(quad_edges, _square_edges(size, size)) @ to_edges


def transform_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 3x3 projective matrix to ``[N, 2]`` points."""
    points = np.asarray(points, np.float64)
    homogeneous = np.c_[points, np.ones(len(points))] @ np.asarray(matrix).T
    return homogeneous[:, :2] / homogeneous[:, 2:]


# ----------------------------------------------------------------------------- align_face

@dataclass
class Alignment:
    """One aligned face and what is needed to map it back.

    ``image``: the aligned RGB picture (``size`` square). ``quad``: [4, 2] corners of the crop in
    the original picture. ``landmarks``: [68, 2] in the original picture (detected unless
    given). ``faces_found``: how many faces the detector saw (the largest was aligned; None when
    landmarks were given). ``face_box``/``face_boxes``: its box and all boxes (left, top, right,
    bottom).
    """

    image: Image.Image
    quad: np.ndarray
    landmarks: np.ndarray
    size: int
    source_size: tuple[int, int]
    faces_found: int | None = None
    face_box: tuple[int, int, int, int] | None = None
    face_boxes: list[tuple[int, int, int, int]] = field(default_factory=list)
    detector: str | None = None
    source: str | None = None

    @property
    def to_aligned(self) -> np.ndarray:
        """3x3 matrix from original to aligned pixel coordinates."""
        return original_to_aligned(self.quad, self.size)

    @property
    def to_original(self) -> np.ndarray:
        """3x3 matrix from aligned to original pixel coordinates."""
        return np.linalg.inv(self.to_aligned)

    @property
    def aligned_landmarks(self) -> np.ndarray:
        return transform_points(self.to_aligned, self.landmarks)

    @property
    def eye_distance(self) -> float:
        return eye_distance(self.landmarks)

    def record(self) -> dict:
        """JSON-ready description (without the image): enough to paste results back later."""
        return {
            "source": self.source, "source_size": list(self.source_size), "size": self.size,
            "quad": self.quad.tolist(), "landmarks": self.landmarks.tolist(),
            "faces_found": self.faces_found,
            "face_box": list(self.face_box) if self.face_box else None,
            "face_boxes": [list(b) for b in self.face_boxes], "detector": self.detector,
            "eye_distance": self.eye_distance, "to_aligned": self.to_aligned.tolist(),
        }


def eye_distance(landmarks: np.ndarray) -> float:
    """Distance between the two eye centres (mean of each eye's six landmarks), in pixels."""
    lm = np.asarray(landmarks, np.float64)
    return float(np.hypot(*(lm[42:48].mean(axis=0) - lm[36:42].mean(axis=0))))


def _as_rgb_image(image, max_pixels: int | None, name: str | None) -> tuple[Image.Image, str]:
    """Whatever ``align_face`` is given -> (RGB PIL image, a name for messages)."""
    if isinstance(image, (str, os.PathLike, bytes, bytearray)):
        label = name or (str(image) if not isinstance(image, (bytes, bytearray)) else "<bytes>")
        return load_image(image, max_pixels=max_pixels, name=label), label
    label = name or "image"
    if isinstance(image, Image.Image):
        if max_pixels is not None and image.width * image.height > max_pixels:
            raise BadImageError(f"{label}: {image.width}x{image.height} is above max_pixels "
                                f"({max_pixels})")
        return to_rgb(image), label
    if hasattr(image, "detach"):  # a torch tensor [1, 3, H, W] or [3, H, W] in [-1, 1]
        tensor = image if image.ndim == 4 else image.unsqueeze(0)
        if tensor.shape[0] != 1:
            raise ValueError(f"{label}: align_face takes one image, got a batch of "
                             f"{tensor.shape[0]}")
        return tensor_to_pil(tensor)[0], label
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim not in (2, 3):
        raise ValueError(f"{label}: expected a path, PIL image, uint8 array [H, W(, 3)] or "
                         f"[-1, 1] tensor, got {type(image).__name__} {array.dtype} {array.shape}")
    return to_rgb(Image.fromarray(array)), label


def _checked_landmarks(landmarks, label: str) -> np.ndarray:
    lm = np.asarray(landmarks, dtype=np.float64)
    # 70-point sets (68 + two pupils, e.g. FaceSynthetics) start with the 68 iBUG points.
    if lm.ndim != 2 or lm.shape[1] != 2 or lm.shape[0] < 68:
        raise ValueError(f"{label}: landmarks must be [68, 2] (iBUG 300-W order), got "
                         f"{lm.shape}")
    lm = lm[:68]
    if not np.isfinite(lm).all():
        raise ValueError(f"{label}: landmarks contain NaN or infinity")
    return lm


def detect_landmarks(rgb: np.ndarray, detector: str = "hog", upsample: int = 1,
                     detect_max_side: int | None = DETECT_MAX_SIDE,
                     ) -> tuple[np.ndarray | None, list[Face]]:
    """Landmarks of the largest face and every face (largest first); ``(None, [])`` if none.

    Detection runs on a copy scaled to ``detect_max_side``; the boxes are scaled back and the
    landmarks predicted on the full-resolution picture.
    """
    height, width = rgb.shape[:2]
    scale = 1.0
    small = rgb
    if detect_max_side and max(width, height) > detect_max_side:
        scale = detect_max_side / max(width, height)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        small = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR))
    faces = detect_faces(small, detector, upsample)
    if scale != 1.0:
        faces = [Face(tuple(int(round(v / scale)) for v in f.box), f.score) for f in faces]
    if not faces:
        return None, []
    return landmarks_in_box(rgb, faces[0].box), faces


def align_face(image, size: int = 1024, landmarks: np.ndarray | None = None,
               detector: str = "hog", *, min_face: float = 0.0, upsample: int = 1,
               detect_max_side: int | None = DETECT_MAX_SIDE,
               transform_size: int = TRANSFORM_SIZE, enable_padding: bool = True,
               max_pixels: int | None = DEFAULT_MAX_PIXELS, name: str | None = None,
               ) -> Alignment:
    """Align the largest face of ``image`` the FFHQ way; returns an :class:`Alignment`.

    ``image``: a path, bytes, PIL image, RGB uint8 array or [-1, 1] tensor (files go through
    :func:`drfhq_lib.data.images.load_image`: EXIF rotation, modes, pixel limit). ``landmarks``:
    68 (or more, first 68 used) iBUG points in the image; detected with dlib when None
    (``detector`` 'hog' or 'mmod', ``upsample`` as dlib's). ``min_face``: smallest accepted
    eye-to-eye distance in original pixels. ``transform_size``: the recipe's 4096 (raised to
    ``size`` when larger).

    Raises :class:`NoFaceError` when no face is found, :class:`FaceTooSmallError` (a NoFaceError)
    when the face is below ``min_face``, :class:`BadImageError` for unreadable files.
    """
    if int(size) != size or size < 1:
        raise ValueError(f"size must be a positive integer, not {size!r}")
    rgb_image, label = _as_rgb_image(image, max_pixels, name)
    faces: list[Face] = []
    if landmarks is None:
        lm, faces = detect_landmarks(np.asarray(rgb_image), detector, upsample, detect_max_side)
        if lm is None:
            raise NoFaceError(
                f"{label}: dlib's {detector} detector found no face in the "
                f"{rgb_image.width}x{rgb_image.height} image; check it shows a frontal face, or "
                "try detector='mmod' (slower, finds more poses)")
    else:
        lm = _checked_landmarks(landmarks, label)
    distance = eye_distance(lm)
    # Below 2 px the recipe's arithmetic degenerates (zero padding widths), whatever min_face.
    if distance < max(min_face, 2.0):
        raise FaceTooSmallError(
            f"{label}: the face's eye-to-eye distance is {distance:.1f} px, below the minimum "
            f"{max(min_face, 2.0):g} px (min_face); use a larger picture or lower min_face")
    aligned, quad = ffhq_align(rgb_image, lm, int(size), max(int(transform_size), int(size)),
                               enable_padding)
    return Alignment(
        image=aligned, quad=quad, landmarks=lm, size=int(size), source_size=rgb_image.size,
        faces_found=len(faces) if landmarks is None else None,
        face_box=faces[0].box if faces else None, face_boxes=[f.box for f in faces],
        detector=detector if landmarks is None else None,
        source=str(image) if isinstance(image, (str, os.PathLike)) else None)


# ----------------------------------------------------------------------------- paste_back

def _result_image(result) -> Image.Image:
    if isinstance(result, Image.Image):
        return to_rgb(result)
    if hasattr(result, "detach"):  # [1, 3, H, W] or [3, H, W] in [-1, 1]
        tensor = result if result.ndim == 4 else result.unsqueeze(0)
        return tensor_to_pil(tensor[:1])[0]
    return to_rgb(Image.fromarray(np.asarray(result)))


def _mask_array(mask, size: tuple[int, int]) -> np.ndarray:
    """Mask (None, PIL, array or tensor; [0, 1], or 0..255 when uint8/'L') -> float32 [H, W]."""
    width, height = size
    if mask is None:
        return np.ones((height, width), np.float32)
    if isinstance(mask, Image.Image):
        array = np.asarray(mask.convert("L") if mask.mode != "F" else mask, np.float32)
        array = array / 255.0 if mask.mode != "F" else array
    else:
        if hasattr(mask, "detach"):
            mask = mask.detach().float().cpu().numpy()
        array = np.asarray(mask)
        array = array / 255.0 if array.dtype == np.uint8 else array
        array = np.squeeze(np.asarray(array, np.float32))
        if array.ndim == 3:  # a colour mask: use its mean
            array = array.mean(axis=0 if array.shape[0] in (1, 3) else 2)
    if array.shape != (height, width):
        array = np.asarray(Image.fromarray(array.astype(np.float32), "F")
                           .resize((width, height), Image.Resampling.BILINEAR))
    return np.clip(array, 0.0, 1.0).astype(np.float32)


def paste_back(result, original, quad, mask=None, *,
               return_mask: bool = False) -> Image.Image | tuple[Image.Image, np.ndarray]:
    """Warp an aligned-space ``result`` (and ``mask``) onto ``original`` and composite them.

    ``result``: PIL image or [-1, 1] tensor ([1, 3, H, W] or [3, H, W]) of the aligned square.
    ``original``: the picture the face was aligned from (PIL, path or array). ``quad``: the
    Alignment (or its ``quad``). ``mask``: None (the whole square), PIL 'L'/'F', uint8 array
    (0..255) or float array/tensor in [0, 1], at the result's size (resized otherwise).

    Returns the RGB composite ``original * (1 - m) + warped * m`` (PIL), and with
    ``return_mask=True`` also ``m``, the warped mask, float32 [H, W] in [0, 1].
    The warp is the exact inverse of the alignment's (projective matrix from the quad's corners
    to the square's), sampled bicubically; a result larger than its footprint in the original is
    first reduced with Lanczos so the paste does not alias.
    """
    if isinstance(quad, Alignment):
        quad = quad.quad
    quad = np.asarray(quad, np.float64)
    if quad.shape != (4, 2):
        raise ValueError(f"quad must be [4, 2], got {quad.shape}")
    picture = _as_rgb_image(original, None, "original")[0]
    source = _result_image(result)
    alpha = _mask_array(mask, source.size)

    footprint = max(np.hypot(*(quad[3] - quad[0])), np.hypot(*(quad[1] - quad[0])))
    if max(source.size) > footprint * 1.25:  # downsampling by more than 1.25x: pre-filter
        target = max(1, int(math.ceil(footprint)))
        scale = target / max(source.size)
        new_size = (max(1, round(source.width * scale)), max(1, round(source.height * scale)))
        source = source.resize(new_size, Image.Resampling.LANCZOS)
        alpha = np.asarray(Image.fromarray(alpha, "F").resize(new_size, Image.Resampling.BILINEAR))

    # Work only on the quad's bounding box (plus a margin for the filter's reach).
    left, top, right, bottom = _quad_bounds(quad)
    box = (max(left - 2, 0), max(top - 2, 0), min(right + 3, picture.width),
           min(bottom + 3, picture.height))
    if box[2] <= box[0] or box[3] <= box[1]:
        composite = picture.copy()
        return (composite, np.zeros((picture.height, picture.width), np.float32)) \
            if return_mask else composite
    box_size = (box[2] - box[0], box[3] - box[1])
    # PIL's PERSPECTIVE wants: output (box) edge coordinates -> input (result) edge coordinates.
    box_to_picture = np.array([[1, 0, box[0]], [0, 1, box[1]], [0, 0, 1]], np.float64)
    matrix = perspective_matrix(quad + 0.5, _square_edges(*source.size)) @ box_to_picture
    coeffs = tuple((matrix / matrix[2, 2]).flatten()[:8])
    warped = np.asarray(source.transform(box_size, Image.Transform.PERSPECTIVE, coeffs,
                                         Image.Resampling.BICUBIC), np.float32)
    warped_alpha = np.asarray(Image.fromarray(alpha, "F").transform(
        box_size, Image.Transform.PERSPECTIVE, coeffs, Image.Resampling.BILINEAR), np.float32)
    warped_alpha = np.clip(warped_alpha, 0.0, 1.0)[..., None]

    canvas = np.asarray(picture, np.float32).copy()
    region = canvas[box[1]:box[3], box[0]:box[2]]
    region[:] = region * (1.0 - warped_alpha) + warped * warped_alpha
    composite = Image.fromarray(np.uint8(np.clip(np.rint(canvas), 0, 255)))
    if not return_mask:
        return composite
    full_mask = np.zeros((picture.height, picture.width), np.float32)
    full_mask[box[1]:box[3], box[0]:box[2]] = warped_alpha[..., 0]
    return composite, full_mask
