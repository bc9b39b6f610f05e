"""Conversions at the edges between files / PIL images and the library's image tensors.

Inside the library an image batch is a float32 tensor ``[N, 3, H, W]`` with values in [-1, 1].
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image


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
