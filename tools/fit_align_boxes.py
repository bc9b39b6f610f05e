"""Fit the box conversion of drfhq_lib/data/detect.py (MMOD_TO_HOG) on mini-world renders.

    drfhq miniworld render --count 40 --seed 4242 --size 384 --out /tmp/mw384
    python tools/fit_align_boxes.py /tmp/mw384 [--scales 0.75 1 1.5]

For each render (styles R and P, each also resized by ``--scales``) where dlib's HOG and MMOD
detectors both find one face, it records both boxes, then prints MMOD_TO_HOG (dx, dy, scale):
the medians of the HOG box centre's offset from the MMOD box centre in MMOD box sides, and of
the side ratio, with the residuals before and after the conversion (box centre error / side,
side error). These renders are not the evaluation renders (benchmarks/bench_align.py measures
on others). Fitted with ``--scales 1`` on 40 identities (seed 4242, 384 px, R and P: 80
renders): centre error median 0.084 -> 0.026, side error median 0.090 -> 0.006.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from drfhq_lib.data.detect import _centre_side, hog_like_box
from drfhq_lib.data.landmarks import detect_faces


def samples(folder: Path, scales):
    for style in ("R", "P"):
        for path in sorted((folder / style).glob("*.png")):
            image = Image.open(path).convert("RGB")
            for scale in scales:
                size = (round(image.width * scale), round(image.height * scale))
                yield f"{style}/{path.name}@{scale}", np.asarray(
                    image.resize(size, Image.Resampling.LANCZOS) if scale != 1 else image)


def residuals(predicted, actual) -> tuple[np.ndarray, np.ndarray]:
    p = np.array([_centre_side(b) for b in predicted])
    a = np.array([_centre_side(b) for b in actual])
    centre = np.hypot(*(p[:, :2] - a[:, :2]).T) / a[:, 2]
    side = p[:, 2] / a[:, 2] - 1
    return centre, side


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--scales", type=float, nargs="+", default=[0.75, 1.0, 1.5])
    args = parser.parse_args(argv)

    hog_boxes, mmod_boxes = [], []
    for folder in args.folders:
        for name, rgb in samples(folder, args.scales):
            hog, mmod = detect_faces(rgb, "hog", 1), detect_faces(rgb, "mmod", 1)
            if len(hog) != 1 or len(mmod) != 1:
                print(f"{name}: skipped ({len(hog)} HOG, {len(mmod)} MMOD faces)")
                continue
            hog_boxes.append(hog[0].box)
            mmod_boxes.append(mmod[0].box)
    n = len(hog_boxes)
    print(f"{n} renders where both detectors found one face")

    h = np.array([_centre_side(b) for b in hog_boxes])
    m = np.array([_centre_side(b) for b in mmod_boxes])
    mmod_to_hog = (float(np.median((h[:, 0] - m[:, 0]) / m[:, 2])),
                   float(np.median((h[:, 1] - m[:, 1]) / m[:, 2])),
                   float(np.median(h[:, 2] / m[:, 2])))
    print("MMOD_TO_HOG = (%.4f, %.4f, %.4f)" % mmod_to_hog)
    for label, predicted in (("raw MMOD box", mmod_boxes),
                             ("converted", [hog_like_box(b, mmod_to_hog) for b in mmod_boxes])):
        c, s = residuals(predicted, hog_boxes)
        print(f"  {label:>12}: centre error / side median {np.median(c):.3f} max {c.max():.3f}; "
              f"side error median {np.median(np.abs(s)):.3f} max {np.abs(s).max():.3f}")


if __name__ == "__main__":
    main()
