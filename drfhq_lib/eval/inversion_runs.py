"""The inversion comparison as a job on files (Fig. 7, 11, 12) and Fig. 14's failure cases.

Every method of ``drfhq_lib.eval.inversion.METHODS`` writes ``OUT/<method>/<name>.png`` (the
result, at the working size) and, where it has one, the W+ as ``OUT/<method>/<name>.npz``;
``OUT/aligned/<name>.png`` holds the aligned input every method saw (it is not a method), and
``OUT/inversion.csv`` one row per (method, input). A rerun skips what exists. The user-study
tools read the same ``OUT/<method>/<name>.png`` folders, with ``ours`` for our results.

Encoder baselines: run the official script on ``OUT/aligned`` and put each result at
``OUT/<method>/<name>.png`` (``<name>`` = the aligned file's stem), or pass the folder of
results as ``external[method]`` (files ``<name>.png|jpg``). Fig. 12's encoders fine-tuned on
DRFHQ may instead give their W+ as ``<name>.npz`` (array ``ws``, ``[num_ws, 512]``), which is
rendered here by G_real. Without results a method is "not run", with the checkpoint it needs
named in the row and the figure. pSp and e4e also run natively (``encoders``) when their
official checkpoint is given as ``checkpoints[method]`` (``psp_ffhq_encode.pt``,
``e4e_ffhq_encode.pt``, read weights-only): the aligned input is encoded as the official
inference does, and the W+ is rendered by the checkpoint's own decoder (rosinality's conversion
of StyleGAN2 FFHQ config-f, constant noise), resized to the working size.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from drfhq_lib.data.detect import align_detected
from drfhq_lib.data.dataset import Manifest
from drfhq_lib.data.images import IMAGE_SUFFIXES, load_image, pil_to_tensor, tensor_to_pil
from drfhq_lib.errors import DrfhqError
from drfhq_lib.eval.inversion import (Context, I2SParams, Method, get_method, result_metrics)
from drfhq_lib.eval.figures import cell_text
from drfhq_lib.files import write_png_atomic
from drfhq_lib.finetune.losses import COLOR_SIZE, SKETCH_SIZE
from drfhq_lib.infer.enhance import CompositeParams, Networks, enhance_files, mask_statistics, postprocess_steps
from drfhq_lib.infer.projection import ProjectionParams, load_latent, render
from drfhq_lib.nets.encoders import CHECKPOINT_NAMES, checkpoint_record, encoder_input, load_encoder, save_ws
from drfhq_lib.nets.identity import FaceEmbedder, build_embedder, identity_similarity
from drfhq_lib.nets.perceptual import build_lpips, resize
from drfhq_lib.nets.weights import Resolved, resolve

FIELDS = ["item", "method", "input", "status", "reason", "seconds", "lpips",
          "identity_similarity", "identity_note", "embedder", "lpips_net", "output", "latent",
          "trained"]


@dataclass
class InversionRun:
    """A run's rows (one per input and method, in that order) and the networks it used."""

    out_dir: Path
    rows: list[dict]
    names: list[str]  # inputs that aligned, in input order
    networks: list[Resolved]
    trained: bool


def _aligned(paths: list[Path], out_dir: Path, size: int) -> tuple[dict, dict]:
    """``OUT/aligned/<name>.png`` for every input (reused on a rerun), and the failures."""
    aligned, failed = {}, {}
    for path in paths:
        target = out_dir / "aligned" / f"{path.stem}.png"
        try:
            if not target.exists():
                write_png_atomic(target, align_detected(path, size=size).image)
            aligned[path.stem] = (path, target)
        except (DrfhqError, OSError, ValueError) as err:
            failed[path.stem] = (path, str(err))
    return aligned, failed


def _check_names(paths: list[Path]) -> None:
    seen: dict[str, Path] = {}
    for path in paths:
        if path.stem in seen:
            raise DrfhqError(f"{path} and {seen[path.stem]} share the name {path.stem!r}, and "
                             "results are stored by name; rename one of them")
        seen[path.stem] = path


def _row(method: str, path: Path, status: str, reason: str = "", seconds: float | None = None,
         **values) -> dict:
    return {"item": f"{method}/{path.stem}", "method": method, "input": str(path),
            "status": status, "reason": reason,
            "seconds": f"{seconds:.2f}" if seconds is not None else "", **values}


def _render_to_png(ctx: Context, ws: torch.Tensor, size: int, path: Path) -> None:
    result = resize(render(ctx.nets.G_real, ws[None].to(ctx.device)), size)
    write_png_atomic(path, tensor_to_pil(result)[0])


def _run_projection(method: Method, ctx: Context, aligned: dict, todo: dict, out: Path,
                    size: int) -> dict:
    """Project and render every input of ``todo``; returns rows by name (ok or failed).

    Every aligned input is handed to the projector, which skips those whose latent exists:
    image i is seeded by its place among all inputs, so a resumed run projects as a fresh one.
    """
    resolution = ctx.nets.G_real.img_resolution
    start = time.perf_counter()
    try:
        targets = {name: resize(pil_to_tensor(load_image(file), ctx.device), resolution)[0]
                   for name, (_, file) in aligned.items()}
        latents = method.project(ctx, targets, out)
    except (DrfhqError, OSError, ValueError, RuntimeError) as err:
        return {name: _row(method.name, path, "failed", f"{type(err).__name__}: {err}")
                for name, (path, _) in todo.items()}
    each = (time.perf_counter() - start) / max(1, len(todo))  # batches share the time
    rows = {}
    for name, (path, _) in todo.items():
        start = time.perf_counter()
        try:
            _render_to_png(ctx, load_latent(latents[name])["ws"], size, out / f"{name}.png")
            rows[name] = _row(method.name, path, "ok", "",
                              each + time.perf_counter() - start, latent=str(latents[name]))
        except (DrfhqError, OSError, ValueError, RuntimeError) as err:
            rows[name] = _row(method.name, path, "failed", f"{type(err).__name__}: {err}")
    return rows


def _external_file(folder: Path | None, name: str, suffixes: Iterable[str]) -> Path | None:
    if folder is None:
        return None
    return next((folder / f"{name}{s}" for s in suffixes if (folder / f"{name}{s}").is_file()),
                None)


def read_external_latent(path: Path) -> torch.Tensor:
    """``ws`` of an encoder's ``.npz`` (no pickles), checked to be one W+ ``[num_ws, w_dim]``."""
    try:
        with np.load(path, allow_pickle=False) as data:
            ws = torch.from_numpy(np.asarray(data["ws"], np.float32))
    except (KeyError, ValueError, OSError) as err:
        raise DrfhqError(f"{path}: not an .npz with an array 'ws' ({err}); save the encoder's "
                         "W+ with numpy.savez(path, ws=latent)") from None
    return ws[0] if ws.ndim == 3 and len(ws) == 1 else ws


def _run_encoder(method: Method, ctx: Context, todo: dict, out: Path, size: int,
                 checkpoint: Path) -> dict:
    """pSp/e4e from their authors' checkpoint: each aligned input encoded, its W+ saved as
    ``<name>.npz`` and rendered by the checkpoint's decoder at the working size."""
    if not todo:
        return {}
    try:
        net = load_encoder(checkpoint, ctx.device, kind=method.name)
    except (DrfhqError, OSError, RuntimeError) as err:
        return {name: _row(method.name, path, "failed", f"{type(err).__name__}: {err}")
                for name, (path, _) in todo.items()}
    rows = {}
    for name, (path, aligned) in tqdm(todo.items(), desc=method.name, disable=not ctx.progress,
                                      leave=False):
        start = time.perf_counter()
        try:
            ws = net.ws(encoder_input(load_image(aligned), ctx.device))
            save_ws(out / f"{name}.npz", ws[0], checkpoint=str(checkpoint), kind=net.kind,
                    notes=net.notes)
            write_png_atomic(out / f"{name}.png",
                             tensor_to_pil(resize(render(net.decoder, ws), size))[0])
            rows[name] = _row(method.name, path, "ok",
                              f"native {method.label} from {checkpoint.name}",
                              time.perf_counter() - start, latent=str(out / f"{name}.npz"))
        except (DrfhqError, OSError, ValueError, RuntimeError) as err:
            rows[name] = _row(method.name, path, "failed", f"{type(err).__name__}: {err}")
    return rows


def _checked_checkpoints(checkpoints: dict[str, str | Path] | None) -> dict[str, Path]:
    unknown = sorted(set(checkpoints or {}) - set(CHECKPOINT_NAMES))
    if unknown:
        raise DrfhqError(f"checkpoints given for {', '.join(unknown)}, but only "
                         f"{', '.join(CHECKPOINT_NAMES)} run natively; give the others' "
                         "results as `external` folders")
    return {k: Path(v) for k, v in (checkpoints or {}).items()}


def _run_external(method: Method, ctx: Context, todo: dict, out: Path, size: int,
                  folder: Path | None) -> dict:
    """Take each input's result from ``out`` or ``folder``; "not run" where there is none."""
    rows = {}
    for name, (path, _) in todo.items():
        start = time.perf_counter()
        latent = (_external_file(out, name, [".npz"]) or _external_file(folder, name, [".npz"])
                  if method.latent_rendered_by_real else None)
        image = _external_file(folder, name, IMAGE_SUFFIXES)
        try:
            if latent is not None:
                ws = read_external_latent(latent)
                if tuple(ws.shape) != (ctx.nets.G_real.num_ws, ctx.nets.G_real.w_dim):
                    raise DrfhqError(f"{latent}: W+ of shape {tuple(ws.shape)}, but G_real takes "
                                     f"[{ctx.nets.G_real.num_ws}, {ctx.nets.G_real.w_dim}]")
                _render_to_png(ctx, ws, size, out / f"{name}.png")
            elif image is not None:
                picture = load_image(image).resize((size, size), Image.Resampling.LANCZOS)
                write_png_atomic(out / f"{name}.png", picture)
            else:
                rows[name] = _row(method.name, path, "not run", method.how_to_supply(out.parent))
                continue
            rows[name] = _row(method.name, path, "ok", f"from {latent or image}",
                              time.perf_counter() - start,
                              latent=str(latent) if latent else "")
        except (DrfhqError, OSError, ValueError, RuntimeError) as err:
            rows[name] = _row(method.name, path, "failed", f"{type(err).__name__}: {err}")
    return rows


def _with_metrics(row: dict, out: Path, aligned: Path, ctx: Context,
                  embedder: FaceEmbedder) -> dict:
    name = Path(row["input"]).stem
    result_path = out / f"{name}.png"
    x = pil_to_tensor(load_image(aligned), ctx.device)
    y = resize(pil_to_tensor(load_image(result_path), ctx.device), x.shape[-1])
    return {**row, **result_metrics(y, x, ctx.lpips, embedder), "output": str(result_path)}


def _todo_and_done(method: Method, aligned: dict, out: Path, manifest: Manifest,
                   overwrite: bool) -> tuple[dict, dict]:
    """Inputs still to do, and rows for results found without an ok row (e.g. an encoder's
    results put into ``OUT/<method>/`` by hand). ``overwrite`` redoes the methods that run
    here; an encoder's results are never thrown away."""
    todo, done = {}, {}
    for name, item in aligned.items():
        if (out / f"{name}.png").exists() and not (overwrite and method.runs_here):
            earlier = manifest.get(f"{method.name}/{name}")
            if earlier is None or earlier["status"] != "ok":
                done[name] = _row(method.name, item[0], "ok", "existing result file")
        else:
            todo[name] = item
    return todo, done


def run_methods(inputs: Iterable[str | Path], methods: Iterable[str], out_dir: str | Path,
                nets: Networks, params: ProjectionParams = ProjectionParams(),
                i2s: I2SParams = I2SParams(), batch: int = 8, size: int | None = None,
                prefer: str = "auto", device: torch.device | str = "cpu",
                external: dict[str, str | Path] | None = None, overwrite: bool = False,
                progress: bool = True,
                guide_sizes: tuple[int, int] = (SKETCH_SIZE, COLOR_SIZE),
                checkpoints: dict[str, str | Path] | None = None) -> InversionRun:
    """Run ``methods`` on ``inputs``: ``OUT/<method>/<name>.png`` (+ ``.npz``) and
    ``OUT/inversion.csv``. A rerun skips results that exist (``overwrite``: recompute those
    of the methods that run here); a failing input or method is a row (status failed +
    reason) and the rest go on. ``size``: working resolution (alignment,
    results, metrics), default the generator's. ``guide_sizes``: where the baseline
    framework's L_sketch and L_color look (the paper's 512 and 256). ``checkpoints``:
    {"e4e" | "psp": official checkpoint file}, run natively (``encoders``) instead of
    looking for the authors' results."""
    paths = [Path(p) for p in inputs]
    _check_names(paths)
    chosen = [get_method(m) for m in methods]
    out_dir, device = Path(out_dir), torch.device(device)
    size = size or nets.G_real.img_resolution
    external = {k: Path(v) for k, v in (external or {}).items()}
    checkpoints = _checked_checkpoints(checkpoints)
    ctx = Context(nets, build_lpips(prefer, device), params, i2s, batch, prefer, device, progress,
                  tuple(guide_sizes))
    if checkpoints:
        ctx.encoders = [checkpoint_record(path, kind) for kind, path in checkpoints.items()
                        if path.is_file() and kind in {m.name for m in chosen}]
    embedder = build_embedder(prefer, device)
    aligned, failed = _aligned(paths, out_dir, size)
    trained = {"trained": str(nets.trained).lower()}
    with Manifest(out_dir / "inversion.csv", FIELDS, key="item") as manifest:
        for method in tqdm(chosen, desc="methods", disable=not progress):
            out = out_dir / method.name
            for name, (path, reason) in failed.items():
                manifest.add({**_row(method.name, path, "failed", reason), **trained})
            todo, done = _todo_and_done(method, aligned, out, manifest, overwrite)
            if method.runs_here:
                if overwrite:  # the projector skips inputs whose latent exists
                    for name in todo:
                        (out / f"{name}.npz").unlink(missing_ok=True)
                rows = _run_projection(method, ctx, aligned, todo, out, size) if todo else {}
            elif method.name in checkpoints:
                rows = _run_encoder(method, ctx, todo, out, size, checkpoints[method.name])
            else:
                rows = _run_external(method, ctx, todo, out, size, external.get(method.name))
            for name, row in {**done, **rows}.items():
                if row["status"] == "ok":
                    row = _with_metrics(row, out, aligned[name][1], ctx, embedder)
                manifest.add({**row, **trained})
        rows = [manifest.get(f"{m.name}/{p.stem}") for p in paths for m in chosen]
    return InversionRun(out_dir, [{f: r.get(f, "") for f in FIELDS} for r in rows if r],
                        list(aligned),
                        [*ctx.resolved(), *embedder.resolved], nets.trained)


def table_rows(run: InversionRun) -> list[dict]:
    """The run's rows with the method's label, for ``results/<stem>.csv``."""
    return [{"label": get_method(r["method"]).label, **r} for r in run.rows]

FAILURE_CATEGORIES = ("accessories", "complex background", "large pose",
                      "paste-back misalignment")


@dataclass
class FailureRun:
    """Fig. 14's rows (one per category and input; an empty category is a "not run" row) and
    its panels: input, G_real's aligned result, the composite pasted back (None where none)."""

    rows: list[dict]
    panels: list[list]
    missing: list[list[str]]
    row_labels: list[str]
    networks: list[Resolved]


def failure_cases(categories: dict[str, list[str | Path]], out_dir: str | Path, nets: Networks,
                  params: ProjectionParams = ProjectionParams(), batch: int = 8,
                  size: int | None = None, prefer: str = "auto",
                  composite_params: CompositeParams = CompositeParams(),
                  device: torch.device | str = "cpu", progress: bool = True) -> FailureRun:
    """Fig. 14: enhance every input (``enhance.enhance_files``, resumable), then per input the
    projection's final LPIPS, the identity similarity of the aligned input and G_real's result,
    and the mask statistics of the paste-back, so failures can be picked by their numbers."""
    out_dir = Path(out_dir)
    paths = list(dict.fromkeys(Path(p) for items in categories.values() for p in items))
    manifest = enhance_files(paths, out_dir, nets, params, batch, size, prefer,
                             composite_params, device, progress=progress) if paths else {}
    embedder = build_embedder(prefer, device)
    run = FailureRun([], [], [], [], [*nets.resolved, resolve("lpips-vgg16", prefer),
                                      resolve("lpips-heads"), resolve("bisenet-faceparse", prefer),
                                      *embedder.resolved])
    for category, items in categories.items():
        if not items:
            reason = f"no input listed for {category!r}: add rendered portraits to `categories`"
            _add_case(run, {"category": category, "input": "", "status": "not run",
                            "reason": reason}, [None] * 3, category, nets)
        for path in map(Path, items):
            row, cells = _failure_row(category, path, manifest.get(str(path), {}), out_dir,
                                      nets, size, prefer, composite_params, device, embedder)
            _add_case(run, row, cells, f"{category}\n{path.stem}", nets)
    return run


def _add_case(run: FailureRun, row: dict, cells: list, label: str, nets: Networks) -> None:
    run.rows.append({**row, "trained": str(nets.trained).lower()})
    run.panels.append(cells)
    reason = "" if row["status"] == "ok" else cell_text(f"{row['reason'][:100]}")
    run.missing.append([reason] + [""] * (len(cells) - 1))  # the reason once, in the first cell
    if row["status"] == "ok":
        label += f"\nLPIPS {row['final_lpips']}, id {row['identity_similarity']}"
    run.row_labels.append(label)


def _failure_row(category: str, path: Path, enhanced: dict, out_dir: Path, nets: Networks,
                 size: int | None, prefer: str, composite_params: CompositeParams, device,
                 embedder: FaceEmbedder) -> tuple[dict, list]:
    row = {"category": category, "input": str(path), "status": enhanced.get("status", "failed"),
           "reason": enhanced.get("reason", "not in the enhance manifest")}
    latent = out_dir / "latents" / f"{path.stem}.npz"
    if row["status"] not in ("ok", "exists") or not latent.exists():
        return {**row, "status": "failed"}, [None, None, None]
    try:
        steps = postprocess_steps(path, latent, nets, size, prefer, composite_params, device)
        identity = identity_similarity(steps["aligned_input"], steps["result"], embedder)
    except (DrfhqError, OSError, ValueError, RuntimeError) as err:
        return {**row, "status": "failed", "reason": f"{type(err).__name__}: {err}"}, \
            [None, None, None]
    value = identity.values[0]
    row.update({"status": "ok", "reason": "",
                "final_lpips": f"{load_latent(latent)['final_distance']:.4f}",
                "identity_similarity": f"{value:.4f}",
                "identity_note": "no face found in the input or the result"
                if math.isnan(value) else "", "embedder": embedder.label,
                **{k: f"{v:.4f}" for k, v in mask_statistics(steps).items()},
                "output": str(out_dir / f"{path.stem}.png")})
    return row, [steps["original"], steps["result"], steps["final"]]


def failure_table(run: FailureRun) -> list[dict]:
    """Rows with every column present (the CSV takes its columns from the first row)."""
    columns = list(dict.fromkeys(k for row in run.rows for k in row))
    return [{k: row.get(k, "") for k in columns} for row in run.rows]
