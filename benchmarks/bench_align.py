"""Face alignment on renders: how often each method finds the face and how well it places the
FFHQ quad (against the quad of ground-truth landmarks), then aligned images per second.

Accuracy (when the folder has ground truth): per method, the share of images where a face was
found, and the median and largest quad error over those: the largest distance between a
corner of the FFHQ quad and the same corner of the quad from the true landmarks, as a share of
the true quad's side (drfhq_lib.data.detect.quad_error). Methods:

    hog                 dlib HOG box -> 68-point predictor (the FFHQ recipe as published)
    mmod                dlib MMOD box as it is -> 68-point predictor
    cascade+dlib        HOG, else MMOD with its box converted; predictor refined
    cascade+facemesh    the same boxes and points seed MediaPipe's face mesh (the default)

Ground truth: ``<stem>_ldmks.txt`` beside an image (Microsoft FaceSynthetics: 70 lines "x y",
the 68 iBUG points then the two pupils), or a mini-world render folder (``drfhq miniworld
render``: ``R/<id>.png`` and ``identities.jsonl`` with each render's projected landmarks).

Speed: two timings per size, the whole path (detection + landmarks + FFHQ alignment, with
``--detector``/``--landmarker``) and the alignment alone with landmarks given.

    python benchmarks/bench_align.py [FOLDER] [--limit 20] [--methods ...] [--no-speed]
                                     [--sizes 256 1024] [--detector cascade]

FOLDER defaults to tests/data (the MIT-licensed test photographs, no ground truth).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from drfhq_lib.data.align import align_face, detect_landmarks
from drfhq_lib.data.detect import DETECTORS, LANDMARKERS, detect_face, quad_error
from drfhq_lib.data.images import list_images, load_image
from drfhq_lib.errors import NoFaceError

METHODS = ("hog", "mmod", "cascade+dlib", "cascade+facemesh")


def ground_truth(folder: Path, paths: list[Path]) -> dict[Path, np.ndarray]:
    """True 68 landmarks per image, where the folder has them."""
    truth = {}
    records = folder.parent / "identities.jsonl" if folder.name in ("R", "P") else None
    if records is not None and records.is_file():
        by_id = {}
        for line in records.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                by_id[record["id"]] = np.asarray(record["landmarks"], np.float64)
        truth.update({p: by_id[p.stem] for p in paths if p.stem in by_id})
    for p in paths:
        text = p.with_name(p.stem + "_ldmks.txt")
        if text.is_file():
            truth[p] = np.loadtxt(text)[:68]  # 70 points: the 68 iBUG points, then 2 pupils
    return truth


def landmarks_by(method: str, rgb: np.ndarray) -> np.ndarray | None:
    if method in ("hog", "mmod"):
        return detect_landmarks(rgb, method)[0]
    try:
        return detect_face(rgb, "cascade", method.split("+")[1]).landmarks
    except NoFaceError:
        return None


@contextlib.contextmanager
def detections_remembered():
    """Within it, each detector runs once per image, whatever the number of methods (MMOD is
    slow). Keyed by the image array's identity: the arrays must stay alive meanwhile."""
    from drfhq_lib.data import align, detect

    memo, plain = {}, align.detect_landmarks

    def detect_once(rgb, detector="hog", upsample=1, *args):
        key = (id(rgb), detector, upsample, args)
        if key not in memo:
            memo[key] = plain(rgb, detector, upsample, *args)
        return memo[key]

    global detect_landmarks
    detect.detect_landmarks = detect_landmarks = detect_once
    try:
        yield
    finally:
        detect.detect_landmarks = detect_landmarks = plain


def accuracy(paths, images, truth, methods, per_image: bool = False) -> None:
    rgbs = {path: np.asarray(image) for path, image in zip(paths, images)}
    print(f"{'method':<18} {'found':>12} {'median':>8} {'max':>8}  worst")
    for method in methods:
        errors = {}
        for path in paths:
            if path in truth:
                lm = landmarks_by(method, rgbs[path])
                if lm is not None:
                    errors[path.name] = quad_error(lm, truth[path])
        if per_image:
            print("  " + " ".join(f"{k.split('.')[0]}:{100 * v:.1f}" for k, v in errors.items()))
        n = sum(p in truth for p in paths)
        values = np.array(list(errors.values()))
        found = f"{len(errors)}/{n} {100 * len(errors) / n:3.0f}%"
        if len(values):
            worst = max(errors, key=errors.get)
            print(f"{method:<18} {found:>12} {100 * np.median(values):7.2f}% "
                  f"{100 * values.max():7.2f}%  {worst}")
        else:
            print(f"{method:<18} {found:>12} {'-':>8} {'-':>8}")
    print("quad error: largest corner distance / side of the true quad, over the faces found")


def given_landmarks(path: Path, image, truth) -> np.ndarray | None:
    """Ground-truth landmarks when known, else dlib's (None when dlib finds no face)."""
    if path in truth:
        return truth[path]
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


def detected(image, size, detector, landmarker):
    fit = detect_face(np.asarray(image), detector, landmarker)
    return align_face(image, size, landmarks=fit.landmarks)


def speed(paths, images, truth, args) -> None:
    landmarks = [given_landmarks(p, im, truth) for p, im in zip(paths, images)]
    pairs = [(im, lm) for im, lm in zip(images, landmarks) if lm is not None]
    if not pairs:
        print("speed: no face found in any image")
        return
    align_face(images[0], 64, landmarks=pairs[0][1])  # load the models before timing
    detected(pairs[0][0], 64, args.detector, args.landmarker)
    print(f"speed: detector {args.detector}, landmarker {args.landmarker}")
    for size in args.sizes:
        full, n_full = images_per_second(
            images, lambda im: detected(im, size, args.detector, args.landmarker))
        only, n_only = images_per_second(
            pairs, lambda pair: align_face(pair[0], size, landmarks=pair[1]))
        print(f"size {size:>4}: detection+landmarks+alignment {full:6.2f} img/s ({n_full} faces)"
              f" | alignment only {only:6.2f} img/s ({n_only})")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, default=ROOT / "tests" / "data")
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--no-speed", action="store_true", help="accuracy only")
    parser.add_argument("--per-image", action="store_true", help="print each image's error")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--detector", default="cascade", choices=DETECTORS)
    parser.add_argument("--landmarker", default="facemesh", choices=LANDMARKERS)
    args = parser.parse_args(argv)

    paths = [p for p in list_images(args.folder) if not p.stem.endswith("_seg")][:args.limit]
    if not paths:
        raise SystemExit(f"{args.folder}: no images")
    images = [load_image(p) for p in paths]
    truth = ground_truth(args.folder, paths)
    sizes = {f"{im.width}x{im.height}" for im in images}
    print(f"{len(images)} images from {args.folder} ({', '.join(sorted(sizes)[:4])}); "
          f"{len(truth)} with ground-truth landmarks")
    if truth:
        with detections_remembered():
            accuracy(paths, images, truth, args.methods, args.per_image)
    if not args.no_speed:
        speed(paths, images, truth, args)


if __name__ == "__main__":
    main()
