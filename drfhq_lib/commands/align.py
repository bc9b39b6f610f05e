"""``drfhq align``: FFHQ-align the faces of image files and folders into a folder
(:func:`drfhq_lib.data.align_job.align_folder`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from drfhq_lib.commands.options import batch_exit_code, require_inputs
from drfhq_lib.errors import DrfhqError


def add_align_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="IN", help="image files and/or folders")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--size", type=int, default=1024, help="output size in pixels (1024)")
    p.add_argument("--detector", choices=["cascade", "hog", "mmod"], default="cascade",
                   help="cascade (default): dlib's HOG, then the MMOD CNN where HOG finds "
                   "nothing, its box converted to the kind the landmark predictor expects; "
                   "or HOG or MMOD alone")
    p.add_argument("--landmarker", choices=["facemesh", "dlib"], default="facemesh",
                   help="facemesh (default): MediaPipe's face mesh seeded by dlib's points "
                   "(better on renders); dlib: the 68-point predictor alone (with --detector "
                   "hog: the FFHQ recipe as published)")
    p.add_argument("--min-face", type=float, default=0.0,
                   help="smallest eye-to-eye distance accepted, in original pixels")
    p.add_argument("--overwrite", action="store_true", help="redo outputs that exist")
    p.add_argument("--limit", type=int, default=None, help="only the first N inputs")
    p.add_argument("--manifest", type=Path, default=None,
                   help="manifest CSV (default OUT/manifest.csv)")


def run(args) -> int:
    from drfhq_lib.data.align_job import align_folder

    inputs = require_inputs(args.inputs)
    if args.size < 1:
        raise DrfhqError(f"--size {args.size}: must be a positive number of pixels (1024 for "
                         "DRFHQ)")
    report = align_folder(inputs, args.out, args.size, detector=args.detector,
                          landmarker=args.landmarker, min_face=args.min_face,
                          overwrite=args.overwrite,
                          manifest=args.manifest, limit=args.limit)
    if not report.rows:
        raise DrfhqError(f"{', '.join(map(str, inputs))}: no images (by suffix) to align")
    print(f"{args.cmd}: {report.summary()}")
    return batch_exit_code(report.failed)


def add_cli(subparsers) -> None:
    p = subparsers.add_parser("align", help="FFHQ-align faces (dlib landmarks) into a folder",
                              description="FFHQ-align the largest face of each image into "
                              "OUT/<name>.png with OUT/<name>.align.json; one manifest row per "
                              "input. Exit 1 when some inputs had no face or could not be read.")
    add_align_arguments(p)
    p.set_defaults(func=run, cmd="align")
