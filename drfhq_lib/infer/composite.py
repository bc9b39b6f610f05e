"""Post-processing of Sec. 8: soften the face mask and blend the result into the original (Eq. 5).

All functions take and return tensors: images ``[N, 3, H, W]`` in [-1, 1], masks ``[N, 1, H, W]``
in [0, 1]. Warping between aligned and original coordinates is ``align.paste_back``'s job.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from drfhq_lib.nets.perceptual import gaussian_blur


def _check_mask(mask: torch.Tensor) -> None:
    if mask.ndim != 4 or mask.shape[1] != 1:
        raise ValueError(f"masks are [N, 1, H, W], got {tuple(mask.shape)}")


def erode(mask: torch.Tensor, pixels: int) -> torch.Tensor:
    """Shrink the mask by ``pixels`` (a square structuring element), so the seam lies inside
    the generated face rather than on the render's hairline or background."""
    _check_mask(mask)
    if pixels <= 0:
        return mask
    return -F.max_pool2d(-mask, kernel_size=2 * pixels + 1, stride=1, padding=pixels)


def feather(mask: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian-blur the mask (kernel 2*ceil(3 sigma)+1) so the blend has no visible edge."""
    _check_mask(mask)
    if sigma <= 0:
        return mask
    size = 2 * math.ceil(3 * sigma) + 1
    pad = size // 2
    # zero padding outside the image: a mask touching the border fades out there too
    padded = F.pad(mask, (pad, pad, pad, pad))
    return gaussian_blur(padded, size, sigma)[..., pad:-pad, pad:-pad].clamp(0, 1)


def soften(mask: torch.Tensor, erode_pixels: int, blur_sigma: float) -> torch.Tensor:
    """m-hat of Eq. 5: the eroded, then blurred mask."""
    return feather(erode(mask, erode_pixels), blur_sigma)


def blend(result: torch.Tensor, original: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Eq. 5: x_final = m * x_res + (1 - m) * x."""
    _check_mask(mask)
    if result.shape != original.shape or mask.shape[-2:] != result.shape[-2:]:
        raise ValueError(f"shapes differ: result {tuple(result.shape)}, original "
                         f"{tuple(original.shape)}, mask {tuple(mask.shape)}")
    return mask * result + (1 - mask) * original


def match_colour(result: torch.Tensor, original: torch.Tensor, mask: torch.Tensor,
                 strength: float = 1.0) -> torch.Tensor:
    """Shift the result's per-channel mean and scale its spread inside the mask to those of the
    original there, so the generated skin takes the render's skin tone and lighting level."""
    _check_mask(mask)
    weight = mask / mask.sum(dim=(2, 3), keepdim=True).clamp_min(1e-6)

    def stats(x):
        mean = (x * weight).sum(dim=(2, 3), keepdim=True)
        std = ((x - mean).square() * weight).sum(dim=(2, 3), keepdim=True).sqrt()
        return mean, std.clamp_min(1e-4)

    (mr, sr), (mo, so) = stats(result), stats(original)
    matched = (result - mr) * (so / sr) + mo
    return (result + strength * (matched - result)).clamp(-1, 1)
