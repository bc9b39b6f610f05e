"""Aligning a batch of pictures into a folder: ``<stem>.png`` + ``<stem>.align.json`` sidecar
per input and a manifest row per input (the compute is :mod:`drfhq_lib.data.align`)."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

from drfhq_lib.data.align import FaceTooSmallError
from drfhq_lib.data.detect import align_detected
from drfhq_lib.data.manifest import (SIDECAR_SUFFIX, BatchReport, Manifest, expand_inputs,
                                     unique_stems)
from drfhq_lib.errors import BadImageError, DrfhqError, NoFaceError
from drfhq_lib.files import write_json_atomic, write_png_atomic

ALIGN_FIELDS = ["file", "status", "reason", "faces", "output", "quad"]


def read_sidecar(path: str | os.PathLike) -> dict:
    """The alignment record written beside an aligned image (``<name>.align.json``); ``quad``
    and ``landmarks`` come back as arrays. Accepts the image's path or the sidecar's."""
    path = Path(path)
    if not path.name.endswith(SIDECAR_SUFFIX):
        path = path.with_name(path.stem + SIDECAR_SUFFIX)
    record = json.loads(path.read_text())
    for key in ("quad", "landmarks", "to_aligned"):
        if record.get(key) is not None:
            record[key] = np.asarray(record[key], np.float64)
    return record


def _output_names(files: Sequence[Path]) -> dict[Path, str]:
    """Output file name per input (:func:`~drfhq_lib.data.manifest.unique_stems` + ``.png``),
    so no output is written twice."""
    return {f: n + ".png" for f, n in unique_stems(files).items()}


def _status_of(err: Exception) -> str:
    if isinstance(err, FaceTooSmallError):
        return "too_small"
    if isinstance(err, NoFaceError):
        return "no_face"
    if isinstance(err, BadImageError):
        return "bad_image"
    return "error"


def _align_one(file: Path, output: Path, size: int, overwrite: bool, options: dict) -> dict:
    row = {"file": str(file), "status": "", "reason": "", "faces": "", "output": str(output),
           "quad": ""}
    sidecar = output.with_name(output.stem + SIDECAR_SUFFIX)
    if output.exists() and not overwrite:
        row.update(status="exists", reason="output exists; pass overwrite=True to redo it")
        if sidecar.exists():
            record = json.loads(sidecar.read_text())
            row.update(quad=json.dumps(record.get("quad")), faces=record.get("faces_found") or "")
        return row
    try:
        result = align_detected(file, size, **options)
    except Exception as err:  # a batch never stops on one file: the manifest says why
        row.update(status=_status_of(err), output="",
                   reason=str(err) if isinstance(err, DrfhqError)
                   else f"{type(err).__name__}: {err}")
        return row
    write_png_atomic(output, result.image)
    write_json_atomic(sidecar, result.record())
    row.update(status="ok", faces=result.faces_found or "", quad=json.dumps(result.quad.tolist()))
    if result.faces_found and result.faces_found > 1:
        row["reason"] = (f"{result.faces_found} faces found; aligned the largest, box "
                         f"{list(result.face_box)}")
    if output.stem != file.stem:
        row["reason"] = "; ".join(filter(None, [row["reason"], (
            f"written as {output.name}: another input has the stem {file.stem!r}")]))
    return row


def align_folder(inputs, out_dir: str | os.PathLike, size: int = 1024, *,
                 detector: str = "cascade", landmarker: str = "facemesh",
                 min_face: float = 0.0, overwrite: bool = False,
                 manifest: str | os.PathLike | None = None, limit: int | None = None,
                 progress: bool = True, **align_options) -> BatchReport:
    """Align every image of ``inputs`` (files and/or folders) into ``out_dir``.

    Each output is ``<out_dir>/<stem>.png`` with ``<stem>.align.json`` beside it (quad,
    landmarks, faces found: what :func:`~drfhq_lib.data.align.paste_back` needs later); inputs
    sharing a stem get distinct names (:func:`~drfhq_lib.data.manifest.unique_stems`). The
    manifest CSV (``<out_dir>/manifest.csv`` unless given) gets one row per input, appended as
    it finishes: file, status (ok, exists, no_face, too_small, bad_image, error), reason, faces,
    output, quad (JSON). One bad file never stops the batch; existing outputs are kept (status
    'exists') unless ``overwrite``; a rerun therefore resumes. ``limit``: first N inputs only.

    ``detector``: 'cascade' (HOG, then MMOD with its box converted), 'hog' or 'mmod';
    ``landmarker``: 'facemesh' (MediaPipe's mesh seeded by dlib) or 'dlib'
    (:func:`drfhq_lib.data.detect.detect_face`). 'hog' or 'mmod' with 'dlib' is the FFHQ recipe
    as published (:func:`~drfhq_lib.data.align.align_face`). Other keyword arguments go to
    :func:`~drfhq_lib.data.detect.align_detected`. A missing network file stops the batch
    (MissingWeightsError) before any image is written.
    """
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = expand_inputs(inputs)[:limit]
    names = _output_names(files)
    options = dict(detector=detector, landmarker=landmarker, min_face=min_face, **align_options)
    # A missing network file fails now, with the way out, not once per image.
    if detector in ("cascade", "mmod"):
        from drfhq_lib.nets import weights

        weights.official_path("dlib-mmod-detector")
    if landmarker == "facemesh":
        from drfhq_lib.nets.facemesh import build_facemesh

        build_facemesh(align_options.get("device", "cpu"))
    rows = []
    with Manifest(Path(manifest or out_dir / "manifest.csv"), ALIGN_FIELDS, key="file") as log:
        bar = tqdm(files, desc="align", unit="img", disable=not progress)
        for file in bar:
            row = _align_one(file, out_dir / names[file], size, overwrite, options)
            log.add(row)
            rows.append(row)
            bar.set_postfix(dict(Counter(r["status"] for r in rows)), refresh=False)
    return BatchReport(rows, log.path)
