"""Conversions at the edges between files / PIL images and the library's image tensors.

Inside the library an image batch is a float32 tensor ``[N, 3, H, W]`` with values in [-1, 1].
``load_image`` is the one way files are read: it refuses what cannot be used (corrupt files,
non-images, decompression bombs) with a BadImageError naming the file, and turns everything else
(EXIF rotation, grayscale, alpha, palette, 16-bit, CMYK) into plain 8-bit RGB.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from drfhq_lib.errors import BadImageError


def pil_to_tensor(image: Image.Image, device: torch.device | str = "cpu",
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """RGB PIL image -> ``[1, 3, H, W]`` in [-1, 1]."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32)
    tensor = torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0)
    return (tensor / 127.5 - 1.0).to(device=device, dtype=dtype)


def tensor_to_uint8(images: torch.Tensor) -> np.ndarray:
    """``[N, 3, H, W]`` in [-1, 1] -> ``[N, H, W, 3]`` uint8 (values clamped, rounded)."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected [N, 3, H, W] images, got shape {tuple(images.shape)}")
    scaled = (images.detach().float().cpu() + 1.0) * 127.5
    return scaled.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def tensor_to_pil(images: torch.Tensor) -> list[Image.Image]:
    return [Image.fromarray(a) for a in tensor_to_uint8(images)]


# ----------------------------------------------------------------------------- loading files

#: Pixel limit of ``load_image`` (width * height). 1e8 pixels is 10000 x 10000, far above any
#: portrait the project uses and far below what would exhaust memory when decoded (~300 MB RGB).
DEFAULT_MAX_PIXELS = 100_000_000

#: Suffixes treated as images when a folder is listed (files given by name are read whatever
#: their suffix: PIL identifies formats by content).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")

_HIGH_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly inside ``folder`` (by suffix, hidden files skipped), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BadImageError(f"{folder}: not a folder")
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".")
                  and p.suffix.lower() in IMAGE_SUFFIXES)


def load_image(source: str | os.PathLike | bytes | BinaryIO, max_pixels: int | None =
               DEFAULT_MAX_PIXELS, alpha: Literal["white", "drop"] = "white",
               name: str | None = None) -> Image.Image:
    """Read an image file (path, bytes or binary file object) as an RGB PIL image.

    * EXIF orientation is applied (the image comes back the way a viewer shows it).
    * Grayscale, palette, CMYK, YCbCr, 16-bit ('I;16') and 32-bit ('I', 'F') images are
      converted to 8-bit RGB (16-bit values scaled by 255/65535).
    * Images with an alpha channel (RGBA, LA, palette with transparency) are composited on
      white (``alpha='white'``, the default: rendered portraits with a transparent background
      get a plain background) or have their alpha dropped (``alpha='drop'``: what
      ``Image.convert('RGB')`` does, the colour under transparent pixels is kept as is).
    * Images of more than ``max_pixels`` pixels are refused before their pixels are decoded
      (decompression bombs); ``None`` leaves only Pillow's own limit
      (``PIL.Image.MAX_IMAGE_PIXELS``, which also applies when max_pixels is larger).
    * Truncated or corrupt files are refused (unlike the FFHQ script, which sets
      ``LOAD_TRUNCATED_IMAGES``): a half-grey training image is worse than a skipped one.
    * Colour profiles (ICC) are ignored; values are taken as sRGB.

    Every refusal is a :class:`BadImageError` whose message names the file.
    """
    if isinstance(source, (bytes, bytearray)):
        name = name or "<bytes>"
        source = io.BytesIO(source)
    elif isinstance(source, (str, os.PathLike)):
        name = name or str(source)
        if not Path(source).is_file():
            raise BadImageError(f"{name}: no such file")
    else:
        name = name or getattr(source, "name", "<file object>")
    try:
        with warnings.catch_warnings():
            # The pixel limit is checked below with a clearer message.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(source)
    except Image.DecompressionBombError as err:
        raise BadImageError(f"{name}: refused as a possible decompression bomb ({err})") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise BadImageError(f"{name}: not an image file Pillow can read ({err}); check that "
                            "the file is a PNG/JPEG/WebP/... and not an error page") from None
    width, height = image.size
    if max_pixels is not None and width * height > max_pixels:
        raise BadImageError(
            f"{name}: {width}x{height} = {width * height} pixels is above the limit of "
            f"{max_pixels} (max_pixels); refused without decoding as a possible decompression "
            "bomb. Raise max_pixels if the image is genuine")
    try:
        image.load()
    except Exception as err:  # Pillow raises OSError, SyntaxError, ValueError, struct.error, ...
        raise BadImageError(f"{name}: corrupt or truncated image data ({err}); download or "
                            "export the file again") from None
    image = _exif_transposed(image)
    try:
        return to_rgb(image, alpha=alpha)
    except ValueError as err:  # e.g. LAB: Pillow has no conversion to RGB
        raise BadImageError(f"{name}: colour mode {image.mode} cannot be converted to RGB "
                            f"({err}); save the file as RGB") from None


def _exif_transposed(image: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # a malformed EXIF block must not cost the image; keep stored orientation
        return image


def to_rgb(image: Image.Image, alpha: Literal["white", "drop"] = "white") -> Image.Image:
    """Any PIL mode -> 8-bit RGB, with the rules of :func:`load_image` (no EXIF handling)."""
    if alpha not in ("white", "drop"):
        raise ValueError(f"alpha must be 'white' or 'drop', not {alpha!r}")
    if image.mode == "RGB":
        return image
    if image.mode in _HIGH_DEPTH_MODES:
        return _high_depth_to_gray(image).convert("RGB")
    if image.mode == "P" and "transparency" in image.info or image.mode in _ALPHA_MODES:
        rgba = image.convert("RGBA")
        if alpha == "drop":
            return rgba.convert("RGB")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")  # L, 1, P, CMYK (Adobe inversion handled by Pillow), YCbCr, ...


def _high_depth_to_gray(image: Image.Image) -> Image.Image:
    values = np.asarray(image).astype(np.float64)
    if image.mode == "F":
        # Float images are either in [0, 1] or already in 8-bit units.
        scale = 255.0 if values.size and np.nanmax(values) <= 1.0 else 1.0
    elif image.mode == "I" and values.size and values.max() <= 255:
        scale = 1.0  # a 32-bit container holding 8-bit values
    else:
        scale = 255.0 / 65535.0  # 16-bit data ('I;16*', or 'I' as older Pillow opens 16-bit PNG)
    gray = np.clip(np.rint(np.nan_to_num(values) * scale), 0, 255).astype(np.uint8)
    return Image.fromarray(gray)
