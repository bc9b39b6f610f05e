"""Aligned images per second on this machine, at 256 and 1024 px output.

Two timings per size: the whole path (dlib detection + 68 landmarks + FFHQ alignment) and the
alignment alone with landmarks given (``<stem>_ldmks.txt`` beside an image when present, as in
Microsoft's FaceSynthetics samples; otherwise landmarks detected before timing starts).

    python benchmarks/bench_align.py [FOLDER] [--sizes 256 1024] [--limit 20] [--detector hog]

FOLDER defaults to tests/data (the MIT-licensed test photographs).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from drfhq_lib.data.align import align_face, detect_landmarks
from drfhq_lib.errors import NoFaceError
from drfhq_lib.data.images import list_images, load_image


def given_landmarks(path: Path, image) -> np.ndarray | None:
    """Ground-truth landmarks next to the image, else dlib's (None when dlib finds no face)."""
    text = path.with_name(path.stem + "_ldmks.txt")
    if text.is_file():
        return np.loadtxt(text)[:68]
    return detect_landmarks(np.asarray(image))[0]


def images_per_second(images, run) -> tuple[float, int]:
    done = 0
    start = time.perf_counter()
    for item in images:
        try:
            run(item)
            done += 1
        except NoFaceError:
            pass
    return done / (time.perf_counter() - start), done


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, default=ROOT / "tests" / "data")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--detector", default="hog", choices=["hog", "mmod"])
    args = parser.parse_args(argv)

    paths = [p for p in list_images(args.folder) if not p.stem.endswith("_seg")][:args.limit]
    if not paths:
        raise SystemExit(f"{args.folder}: no images")
    images = [load_image(p) for p in paths]
    landmarks = [given_landmarks(p, im) for p, im in zip(paths, images)]
    pairs = [(im, lm) for im, lm in zip(images, landmarks) if lm is not None]
    align_face(images[0], 64, landmarks=pairs[0][1])  # load dlib's models before timing
    detect_landmarks(np.asarray(images[0]), args.detector)
    sizes = {f"{im.width}x{im.height}" for im in images}
    print(f"{len(images)} images from {args.folder} ({', '.join(sorted(sizes)[:4])}); "
          f"detector {args.detector}")
    for size in args.sizes:
        full, n_full = images_per_second(
            images, lambda im: align_face(im, size, detector=args.detector))
        only, n_only = images_per_second(
            pairs, lambda pair: align_face(pair[0], size, landmarks=pair[1]))
        print(f"size {size:>4}: detection+landmarks+alignment {full:6.2f} img/s ({n_full} faces)"
              f" | alignment only {only:6.2f} img/s ({n_only})")


if __name__ == "__main__":
    main()
