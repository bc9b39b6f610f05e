"""FFHQ-aligned crops of a rendered mini-world folder: the training and test sets.

A render folder (``drfhq miniworld render``) holds ``R/<id>.png``, ``P/<id>.png`` and
``identities.jsonl`` with the 68 landmarks each portrait's camera projects. The renderer knows
where the landmarks are, so the FFHQ quad comes from them and no detector runs. The aligned set
has the same layout (``R/``, ``P/``, ``identities.jsonl`` whose landmarks are in aligned pixels).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from drfhq_lib.data.align import align_face
from drfhq_lib.data.images import load_image, pil_to_tensor
from drfhq_lib.files import write_png_atomic, write_text_atomic
from drfhq_lib.miniworld.errors import MiniworldError

STYLES = ("R", "P")
RECORDS = "identities.jsonl"


def read_records(folder: str | os.PathLike) -> list[dict]:
    """The identity records of a render or aligned folder, in file order."""
    path = Path(folder) / RECORDS
    if not path.is_file():
        raise MiniworldError(f"{path}: no such file; render the folder first with "
                             f"`drfhq miniworld render --count N --seed S --size PX --out {folder}`")
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    try:
        return [json.loads(line) for line in lines]
    except json.JSONDecodeError as err:
        raise MiniworldError(f"{path}: line {err.lineno} is not JSON ({err.msg}); delete the "
                             "file and render the folder again (finished images are kept)") from err


def aligned_crop(image: Image.Image, landmarks, size: int) -> tuple[Image.Image, np.ndarray]:
    """The FFHQ crop of ``image`` at ``size`` px from known landmarks, and the landmarks in it."""
    result = align_face(image, size=size, landmarks=np.asarray(landmarks, np.float64),
                        transform_size=4 * size, min_face=0)
    return result.image, result.aligned_landmarks


def align_folder(render_dir: str | os.PathLike, out_dir: str | os.PathLike, size: int,
                 progress: bool = True) -> Path:
    """Aligned crops of every identity of ``render_dir`` in ``out_dir`` (resumable)."""
    render_dir, out_dir = Path(render_dir), Path(out_dir)
    records = read_records(render_dir)
    for style in STYLES:
        (out_dir / style).mkdir(parents=True, exist_ok=True)
    aligned_records = []
    for record in tqdm(records, desc=f"align {render_dir.name} -> {size} px", disable=not progress):
        landmarks = None
        for style in STYLES:
            target = out_dir / style / f"{record['id']}.png"
            if target.exists() and landmarks is not None:
                continue
            source = render_dir / style / f"{record['id']}.png"
            crop, landmarks = aligned_crop(load_image(source), record["landmarks"], size)
            if not target.exists():
                write_png_atomic(target, crop)
        aligned_records.append({**record, "landmarks": np.round(landmarks, 3).tolist(),
                                "render_landmarks": record["landmarks"], "size": size})
    write_text_atomic(out_dir / RECORDS, "".join(json.dumps(r) + "\n" for r in aligned_records))
    return out_dir


def load_aligned(folder: str | os.PathLike, style: str, limit: int | None = None,
                 device="cpu") -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """(ids, images [N, 3, S, S] in [-1, 1], z [N, z_dim]) of one style of an aligned folder."""
    if style not in STYLES:
        raise MiniworldError(f"style must be one of {STYLES}, not {style!r}")
    records = read_records(folder)[:limit]
    images = [pil_to_tensor(load_image(Path(folder) / style / f"{r['id']}.png")) for r in records]
    z = torch.tensor([r["z"] for r in records], dtype=torch.float32)
    return [r["id"] for r in records], torch.cat(images).to(device), z.to(device)
