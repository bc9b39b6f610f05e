"""The mini world's ground-truth benchmark: every method's output scored against the P render.

In the paper no photo of a rendered avatar exists, so realism and identity are judged by people
and by proxies. In the mini world each held-out identity is rendered in both styles, so the
output of a method given the R render can be compared with the same person's P render: LPIPS,
PSNR and the error of the landmarks dlib's predictor places on the output against those it
places on the P render (in the same box, taken from the renderer's true landmarks, so detection
failures do not decide the score). Intervals are 95 % percentile bootstraps over identities.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from drfhq_lib.data.images import tensor_to_uint8


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per image of [-1, 1] batches (peak = the full range)."""
    mse = ((a.float() - b.float()) / 2).square().flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-12))


def bootstrap_interval(values, samples: int = 2000, seed: int = 0,
                       level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (NaNs dropped)."""
    x = np.asarray(values, np.float64)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), (samples, len(x)))].mean(1)
    alpha = (1 - level) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def face_box(landmarks: np.ndarray, scale: float = 1.0) -> tuple[int, int, int, int]:
    """A dlib-frontal-like square box (left, top, right, bottom) around 68 landmarks."""
    lm = np.asarray(landmarks, np.float64) * scale
    left, right = lm[:17, 0].min(), lm[:17, 0].max()
    top, bottom = lm[17:27, 1].min(), lm[:, 1].max()
    side = max(right - left, bottom - top)
    cx, cy = (left + right) / 2, (top + bottom) / 2
    return (int(round(cx - side / 2)), int(round(cy - side / 2)),
            int(round(cx + side / 2)), int(round(cy + side / 2)))


def predicted_landmarks(images: torch.Tensor, boxes: list, work_size: int = 256) -> np.ndarray:
    """dlib's 68 points on each image (upsampled to ``work_size``) inside the given box (boxes
    in ``work_size`` pixels); [N, 68, 2] in the images' own pixels."""
    from drfhq_lib.data.landmarks import landmarks_in_box

    size = images.shape[-1]
    up = torch.nn.functional.interpolate(images.float(), size=work_size, mode="bicubic",
                                         align_corners=False).clamp(-1, 1)
    rgb = tensor_to_uint8(up)
    return np.stack([landmarks_in_box(img, box) for img, box in zip(rgb, boxes)]) \
        * (size / work_size)


def landmark_error(found: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Mean point distance over the 68 landmarks, as a fraction of the reference's distance
    between the outer eye corners (points 36 and 45), per image [N]."""
    ocular = np.linalg.norm(reference[:, 45] - reference[:, 36], axis=1)
    return np.linalg.norm(found - reference, axis=2).mean(1) / ocular


@dataclass
class Scores:
    lpips: np.ndarray
    psnr: np.ndarray
    landmarks: np.ndarray

    def row(self, method: str, seed: int = 0) -> dict:
        out = {"method": method, "n": int(len(self.lpips))}
        for name in ("lpips", "psnr", "landmarks"):
            values = getattr(self, name)
            low, high = bootstrap_interval(values, seed=seed)
            out.update({name: float(np.nanmean(values)), f"{name}_ci_low": low,
                        f"{name}_ci_high": high})
        return out


def score(outputs: torch.Tensor, references: torch.Tensor, reference_landmarks: np.ndarray,
          true_landmarks: np.ndarray, lpips_net, work_size: int = 256) -> Scores:
    """Scores of ``outputs`` against ``references`` (the P renders), all [N, 3, S, S].

    ``reference_landmarks``: dlib's points on the references (:func:`predicted_landmarks`);
    ``true_landmarks``: the renderer's, which place the box dlib predicts in."""
    boxes = [face_box(lm, work_size / outputs.shape[-1]) for lm in true_landmarks]
    with torch.no_grad():
        lp = torch.cat([lpips_net(o, r) for o, r in zip(outputs.split(16), references.split(16))])
    found = predicted_landmarks(outputs, boxes, work_size)
    return Scores(lp.flatten().cpu().numpy(), psnr(outputs, references).cpu().numpy(),
                  landmark_error(found, reference_landmarks))
