"""Inversion baselines (Fig. 7, Sec. 5.2.1), the framework and inversion ablations (Fig. 11,
Sec. 5.3.2; Fig. 12, Sec. 5.3.3) and the failure cases of Sec. 6 (Fig. 14).

A *method* turns an aligned rendered portrait into a photo-real one. Every method here writes
``OUT/<method>/<name>.png`` (the result, at the working size) and, where it has one, the W+ as
``OUT/<method>/<name>.npz``; ``OUT/aligned/<name>.png`` holds the aligned input every method
saw, and ``OUT/inversion.csv`` one row per (method, input). The user-study tools read the same
``OUT/<method>/<name>.png`` folders, with ``ours`` for our results.

Methods that run here (all render their W+ with G_real's constant noise, as ``enhance`` does):

* ``ours``: Sec. 3.3's projection into G_rendering (``projection.project``), rendered by G_real;
* ``latent-optimisation``: the same projection straight into G_real (Fig. 7);
* ``baseline-framework``: projection into G_real with lambda_s L_sketch + lambda_c L_color added
  to Eq. 4 (``projection.identity_guide``; Fig. 11);
* ``i2s``: Image2StyleGAN (Abdal et al. 2019): W+ from the mean w, Adam at a constant lr 0.01,
  loss MSE + perceptual, no noise optimisation, 5000 steps in the original; projected into
  G_rendering and rendered by G_real (Fig. 12). The perceptual term is our LPIPS network, not
  I2S's own VGG16 layer sum.

Encoder baselines need their authors' code and checkpoints, which drfhq does not re-implement:
run the official script on ``OUT/aligned`` and put each result at ``OUT/<method>/<name>.png``
(``<name>`` = the aligned file's stem), or pass the folder of results as ``external[method]``
(files ``<name>.png|jpg``). Fig. 12's encoders fine-tuned on DRFHQ may instead give their W+
as ``<name>.npz`` (array ``ws``, ``[num_ws, 512]``), which is rendered here by G_real. Without
results a method is "not run", with the checkpoint it needs named in the row and the figure.
pSp and e4e also run natively (``encoders``) when their official checkpoint is given as
``checkpoints[method]`` (``psp_ffhq_encode.pt``, ``e4e_ffhq_encode.pt``, read weights-only):
the aligned input is encoded as the official inference does, and the W+ is rendered by the
checkpoint's own decoder (rosinality's conversion of StyleGAN2 FFHQ config-f, constant noise),
resized to the working size. Without a checkpoint they behave as the other encoders.
"""

from __future__ import annotations

import math
import textwrap
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from drfhq_lib.data.align import align_face
from drfhq_lib.data.dataset import Manifest
from drfhq_lib.nets.encoders import (CHECKPOINT_NAMES, checkpoint_record, encoder_input, load_encoder,
                       save_ws)
from drfhq_lib.infer.enhance import CompositeParams, Networks, enhance_files, mask_statistics, postprocess_steps
from drfhq_lib.errors import DrfhqError
from drfhq_lib.files import write_png_atomic
from drfhq_lib.nets.identity import FaceEmbedder, build_embedder, identity_similarity
from drfhq_lib.data.images import IMAGE_SUFFIXES, load_image, pil_to_tensor, tensor_to_pil
from drfhq_lib.finetune.losses import COLOR_SIZE, SKETCH_SIZE
from drfhq_lib.nets.perceptual import LPIPSVGG16, build_lpips, resize
from drfhq_lib.infer.projection import (Guide, Projection, ProjectionParams, distance_to, identity_guide,
                         load_latent, project_to_files, render, w_statistics)
from drfhq_lib.provenance import label_for_figure
from drfhq_lib.nets.weights import Resolved, resolve

# ----------------------------------------------------------------------------- Image2StyleGAN


@dataclass(frozen=True)
class I2SParams:
    """Image2StyleGAN's embedding (Abdal et al. 2019, Sec. 4): Adam (0.9, 0.999, eps 1e-8) at a
    constant lr of 0.01 from the mean w, loss = mse_weight * MSE + perceptual_weight * LPIPS
    (images in [-1, 1] at ``loss_size``), generator noise fixed (not optimised)."""

    steps: int = 5000
    lr: float = 0.01
    mse_weight: float = 1.0
    perceptual_weight: float = 1.0
    loss_size: int = 256
    w_avg_samples: int = 10_000  # for the mean w, as the projector's
    seed: int = 0  # I2S draws nothing at random; kept so latents record it like the projector's

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class I2SProjection(Projection):
    """A projection plus what the I2S optimiser did: its lr at each step and what it moved."""

    learning_rates: list[float] = field(default_factory=list)
    optimised: list[str] = field(default_factory=list)


class I2SDistance:
    """I2S's loss per image: pixel MSE plus the perceptual (here LPIPS) distance.
    ``against(target)`` computes the target's LPIPS features once, as the projector does."""

    def __init__(self, lpips_net: LPIPSVGG16, params: I2SParams = I2SParams()):
        self.lpips, self.params = lpips_net, params

    def _total(self, synth, target, perceptual: torch.Tensor) -> torch.Tensor:
        mse = (synth - target).square().flatten(1).mean(1)
        return self.params.mse_weight * mse + self.params.perceptual_weight * perceptual

    def __call__(self, synth: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self._total(synth, target, self.lpips(synth, target))

    def against(self, target: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        if not hasattr(self.lpips, "against"):
            return lambda synth: self(synth, target)
        perceptual = self.lpips.against(target)
        return lambda synth: self._total(synth, target, perceptual(synth))


def i2s_distance(lpips_net: LPIPSVGG16, params: I2SParams = I2SParams()) -> I2SDistance:
    return I2SDistance(lpips_net, params)


def i2s_project(G, targets: torch.Tensor, distance: Callable, params: I2SParams = I2SParams(),
                seeds: list[int] | None = None, progress: bool = True,
                w_stats: tuple[torch.Tensor, float] | None = None,
                guide: Guide | None = None) -> I2SProjection:
    """Embed ``targets`` ``[N, 3, R, R]`` in W+ the I2S way (same arguments as
    ``projection.project``, so ``project_to_files`` can run it; ``seeds`` is unused).

    Only W+ is optimised; the synthesis uses the generator's constant noise, which stays as it
    is. Losses are per image and Adam is element-wise, so a batch equals one-by-one runs.
    """
    n, device = targets.shape[0], targets.device
    w_avg = (w_stats or w_statistics(G, params, device))[0]
    ws = w_avg.detach().reshape(1, 1, -1).repeat(n, G.num_ws, 1).requires_grad_(True)
    optimizer = torch.optim.Adam([ws], lr=params.lr, betas=(0.9, 0.999), eps=1e-8)
    loss_size = min(params.loss_size, G.img_resolution)  # compared smaller, never enlarged
    target_small = resize(targets.float(), loss_size)
    measure = distance_to(distance, target_small)
    history, lrs = [], []
    loss = dist = torch.zeros(n)
    for _ in tqdm(range(params.steps), desc=f"I2S {n}", disable=not progress, leave=False):
        synth = G.synthesis(ws, noise_mode="const")
        dist = measure(resize(synth, loss_size)).reshape(n)
        loss = dist + guide(synth, targets) if guide is not None else dist
        optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()
        optimizer.step()
        history.append(dist.detach().cpu().tolist())
        lrs.append(optimizer.param_groups[0]["lr"])
    return I2SProjection(ws.detach(), loss.detach().cpu().tolist(), dist.detach().cpu().tolist(),
                         params, history, learning_rates=lrs, optimised=["ws"])


# ----------------------------------------------------------------------------- method registry

@dataclass
class Context:
    """What methods share in one run: networks, losses and parameters."""

    nets: Networks
    lpips: LPIPSVGG16
    params: ProjectionParams
    i2s: I2SParams
    batch: int
    prefer: str
    device: torch.device
    progress: bool
    guide_sizes: tuple[int, int] = (SKETCH_SIZE, COLOR_SIZE)  # L_sketch's and L_color's
    _sketch: torch.nn.Module | None = None
    encoders: list[Resolved] = field(default_factory=list)  # checkpoints of native encoders

    def sketch(self) -> torch.nn.Module:
        """The sketch extractor, built only when a method needs it (the baseline framework)."""
        if self._sketch is None:
            from drfhq_lib.nets.sketch import build_sketch

            self._sketch = build_sketch(self.prefer, self.device)
        return self._sketch

    def resolved(self) -> list[Resolved]:
        extra = self._sketch.resolved if self._sketch is not None else []
        return [*self.nets.resolved, *self.lpips.resolved, *extra, *self.encoders]


# project(ctx, targets [name -> [3, R, R]], folder) -> latent files by name
Projector = Callable[[Context, dict, Path], dict]


def _ours(ctx: Context, targets: dict, folder: Path) -> dict:
    return project_to_files(ctx.nets.G_rendering, targets, folder, ctx.lpips, ctx.params,
                            ctx.batch, ctx.progress)


def _latent_optimisation(ctx: Context, targets: dict, folder: Path) -> dict:
    return project_to_files(ctx.nets.G_real, targets, folder, ctx.lpips, ctx.params, ctx.batch,
                            ctx.progress)


def _baseline_framework(ctx: Context, targets: dict, folder: Path) -> dict:
    return project_to_files(ctx.nets.G_real, targets, folder, ctx.lpips, ctx.params, ctx.batch,
                            ctx.progress, guide=identity_guide(ctx.sketch(), ctx.lpips,
                                                               sketch_size=ctx.guide_sizes[0],
                                                               color_size=ctx.guide_sizes[1]))


def _i2s(ctx: Context, targets: dict, folder: Path) -> dict:
    return project_to_files(ctx.nets.G_rendering, targets, folder,
                            i2s_distance(ctx.lpips, ctx.i2s), ctx.i2s, ctx.batch, ctx.progress,
                            projector=i2s_project)


@dataclass(frozen=True)
class Method:
    """One column of the comparison figures.

    ``project`` set: the method runs here and its W+ is rendered by G_real. Otherwise it is an
    encoder whose results come from the authors' code (``repo``, ``script``, ``checkpoint``).
    """

    name: str  # the folder under OUT and the ``method`` column
    label: str  # column title
    figures: str
    needs: str  # in words
    project: Projector | None = None
    repo: str = ""
    script: str = ""
    checkpoint: str = ""
    latent_rendered_by_real: bool = False  # an external W+ (.npz) is rendered by G_real

    @property
    def runs_here(self) -> bool:
        return self.project is not None

    def how_to_supply(self, out_dir: Path) -> str:
        """Why an encoder was not run, naming the checkpoint and where results go."""
        latent = " or its W+ as <name>.npz (array ws)" if self.latent_rendered_by_real else ""
        return (f"needs {self.checkpoint} ({self.repo}): run {self.script} on "
                f"{Path(out_dir) / 'aligned'} and save each result as "
                f"{Path(out_dir) / self.name}/<name>.png{latent}")


_ENCODER_NOTE = "the authors' code and checkpoint"
METHODS: dict[str, Method] = {m.name: m for m in [
    Method("ours", "ours", "Fig. 7, 11, 12, 14", "G_rendering and G_real, LPIPS",
           project=_ours),
    Method("latent-optimisation", "latent optimisation", "Fig. 7", "G_real, LPIPS",
           project=_latent_optimisation),
    Method("baseline-framework", "baseline framework", "Fig. 11",
           "G_real, LPIPS, sketch extractor", project=_baseline_framework),
    Method("i2s", "I2S", "Fig. 12", "G_rendering and G_real, LPIPS (as I2S's perceptual term)",
           project=_i2s),
    Method("e4e", "e4e", "Fig. 7", _ENCODER_NOTE, repo="omertov/encoder4editing",
           script="scripts/inference.py", checkpoint="e4e_ffhq_encode.pt"),
    Method("psp", "pSp", "Fig. 7", _ENCODER_NOTE, repo="eladrich/pixel2style2pixel",
           script="scripts/inference.py", checkpoint="psp_ffhq_encode.pt"),
    Method("hyperstyle", "HyperStyle", "Fig. 7", _ENCODER_NOTE, repo="yuval-alaluf/hyperstyle",
           script="scripts/inference.py --load_w_encoder",
           checkpoint="hyperstyle_ffhq.pt + faces_w_encoder.pt"),
    Method("restyle-psp", "ReStyle-pSp", "Fig. 7", _ENCODER_NOTE,
           repo="yuval-alaluf/restyle-encoder", script="scripts/inference_iterative.py",
           checkpoint="restyle_psp_ffhq_encode.pt"),
    Method("restyle-e4e", "ReStyle-e4e", "Fig. 7", _ENCODER_NOTE,
           repo="yuval-alaluf/restyle-encoder", script="scripts/inference_iterative.py",
           checkpoint="restyle_e4e_ffhq_encode.pt"),
    Method("e4e-drfhq", "e4e (DRFHQ)", "Fig. 12", _ENCODER_NOTE + ", fine-tuned on DRFHQ",
           repo="omertov/encoder4editing", script="scripts/inference.py",
           checkpoint="e4e_ffhq_encode.pt fine-tuned on DRFHQ (scripts/train.py)",
           latent_rendered_by_real=True),
    Method("restyle-e4e-drfhq", "ReStyle-e4e (DRFHQ)", "Fig. 12",
           _ENCODER_NOTE + ", fine-tuned on DRFHQ", repo="yuval-alaluf/restyle-encoder",
           script="scripts/inference_iterative.py",
           checkpoint="restyle_e4e_ffhq_encode.pt fine-tuned on DRFHQ (scripts/train_restyle_e4e.py)",
           latent_rendered_by_real=True),
]}

CELL_CHARS = 24  # characters per line of a figure cell's text (1.6 inch cells, 6 pt)
FIG7 = ["e4e", "psp", "hyperstyle", "restyle-psp", "restyle-e4e", "latent-optimisation", "ours"]
FIG11 = ["baseline-framework", "ours"]
FIG12 = ["e4e-drfhq", "restyle-e4e-drfhq", "i2s", "ours"]


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise DrfhqError(f"unknown inversion method {name!r}; choose from "
                         f"{', '.join(METHODS)}") from None


# ----------------------------------------------------------------------------- runner

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
                write_png_atomic(target, align_face(path, size=size).image)
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


@torch.no_grad()
def result_metrics(result: torch.Tensor, aligned: torch.Tensor, lpips_net: LPIPSVGG16,
                   embedder: FaceEmbedder) -> dict:
    """LPIPS and identity similarity of one result ``[1, 3, S, S]`` to its aligned input."""
    distance = float(lpips_net(result, aligned)[0])
    identity = identity_similarity(aligned, result, embedder).values[0]
    return {"lpips": f"{distance:.4f}", "identity_similarity": f"{identity:.4f}",
            "identity_note": "no face found in the input or the result"
            if math.isnan(identity) else "",
            "embedder": embedder.label, "lpips_net": lpips_net.label}


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


# ----------------------------------------------------------------------------- figures

def figure_note(nets: Networks, networks: Iterable[Resolved], extra: str = "") -> str:
    """Small print for a figure: substitutes, and that G_rendering is not fine-tuned."""
    parts = [label_for_figure(networks)]
    if nets.G_rendering is nets.G_real:
        parts.append("G_rendering = G_real (not fine-tuned): 'ours' is not the paper's method here")
    return "; ".join(p for p in [*parts, extra] if p)


def grid_cells(run: InversionRun, methods: list[str]) -> tuple[list, list, list[str], list[str]]:
    """Rows of (aligned input, one result per method) for ``figures.image_grid``: a cell is
    None where a method did not give a result, with the reason in ``missing``."""
    by_item = {r["item"]: r for r in run.rows}
    cells, missing = [], []
    for name in run.names:
        row_cells: list = [load_image(run.out_dir / "aligned" / f"{name}.png")]
        row_missing = [""]
        for m in methods:
            row = by_item.get(f"{m}/{name}", {})
            result = run.out_dir / m / f"{name}.png"
            ok = row.get("status") == "ok" and result.exists()
            row_cells.append(load_image(result) if ok else None)
            row_missing.append("" if ok else _short_reason(m, row))
        cells.append(row_cells)
        missing.append(row_missing)
    col_labels = ["input"] + [get_method(m).label for m in methods]
    return cells, missing, list(run.names), col_labels


def _short_reason(method: str, row: dict) -> str:
    """What a figure cell says for a missing result, wrapped to fit the cell."""
    m = get_method(method)
    if row.get("status") == "not run" and not m.runs_here:
        return _wrapped(f"needs {m.checkpoint}")
    return _wrapped(row.get("status", "no row") + (": " + row["reason"][:60]
                                                    if row.get("reason") else ""))


def _wrapped(text: str, width: int = CELL_CHARS) -> str:
    return textwrap.fill(text, width, break_long_words=True)


def comparison_figure(run: InversionRun, methods: list[str], nets: Networks, title: str,
                      extra_note: str = ""):
    """The Fig. 7/11/12 grid, stamped when the networks are untrained stand-ins."""
    from drfhq_lib.eval.figures import UNTRAINED, image_grid

    cells, missing, row_labels, col_labels = grid_cells(run, methods)
    return image_grid(cells, row_labels, col_labels, title=title,
                      warning="" if run.trained else UNTRAINED,
                      note=figure_note(nets, run.networks, extra_note), missing=missing)


def table_rows(run: InversionRun) -> list[dict]:
    """The run's rows with the method's label, for ``results/<stem>.csv``."""
    return [{"label": get_method(r["method"]).label, **r} for r in run.rows]


# ----------------------------------------------------------------------------- failure cases

FAILURE_CATEGORIES = ("accessories", "complex background", "large pose",
                      "paste-back misalignment")
FAILURE_COLUMNS = ["input", "ours (G_real)", "pasted back"]


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
    reason = "" if row["status"] == "ok" else _wrapped(f"{row['reason'][:100]}")
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


def failure_figure(run: FailureRun, nets: Networks, title: str = "Fig. 14: failure cases"):
    """Fig. 14's grid: one row per case, its numbers in the row label."""
    from drfhq_lib.eval.figures import UNTRAINED, image_grid

    return image_grid(run.panels, run.row_labels, FAILURE_COLUMNS, title=title,
                      warning="" if nets.trained else UNTRAINED,
                      note=figure_note(nets, run.networks), missing=run.missing)


def failure_table(run: FailureRun) -> list[dict]:
    """Rows with every column present (the CSV takes its columns from the first row)."""
    columns = list(dict.fromkeys(k for row in run.rows for k in row))
    return [{k: row.get(k, "") for k in columns} for row in run.rows]
