"""What a user runs: rendered portraits in, photo-real faces pasted back into them out.

align (Sec. 3.1) -> project into G_rendering (Sec. 3.3) -> render the W+ with G_real ->
face mask, warp back, erode, blur and blend (Sec. 8, Eq. 5).

Each input ``IN/name.ext`` gives ``OUT/name.png`` (the final composite), ``OUT/compare/name.png``
(input, aligned, G_rendering reconstruction, G_real result, final), ``OUT/latents/name.npz``
(the W+) and a row of ``OUT/manifest.csv``. A rerun skips finished inputs; one failing input
never stops the batch. Under torchrun each process takes a share of the inputs
(:mod:`drfhq_lib.infer.sharding`).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from tqdm.auto import tqdm

from drfhq_lib.infer import composite
from drfhq_lib.nets import faceparse
from drfhq_lib.nets import weights
from drfhq_lib.data.align import Alignment, paste_back
from drfhq_lib.data.detect import align_detected
from drfhq_lib.data.manifest import Manifest, part_path, unique_stems
from drfhq_lib.data.manifest import expand_inputs  # noqa: F401 (enhance.expand_inputs, notebooks)
from drfhq_lib.errors import DrfhqError
from drfhq_lib.files import write_json_atomic, write_png_atomic
from drfhq_lib.data.images import load_image, pil_to_tensor, tensor_to_pil
from drfhq_lib.nets.perceptual import build_lpips, resize
from drfhq_lib.infer import sharding
from drfhq_lib.infer.projection import (ProjectionParams, init_setting, load_latent,
                                        project_to_files, render, w_statistics)
from drfhq_lib.nets.weights import Resolved

MANIFEST_FIELDS = ["input", "status", "reason", "seconds", "final_lpips", "output"]


@dataclass
class Networks:
    """The two generators and what they are, for labels and provenance."""

    G_real: torch.nn.Module
    G_rendering: torch.nn.Module
    real_label: str
    rendering_label: str
    trained: bool  # False when either generator is an untrained stand-in
    resolved: list[Resolved] = field(default_factory=list)
    world: str = ""  # "miniworld" when the mini world's networks are used

    @property
    def note(self) -> str:
        """What figures made with these networks must say about them ("" for the paper's)."""
        if self.world == MINIWORLD:
            from drfhq_lib.miniworld.models import WORLD_NOTE

            return WORLD_NOTE
        return ""

    def caption(self, networks: list[Resolved]) -> str:
        """The line a figure made with these networks carries: UNTRAINED when they are
        stand-ins, the mini world's note, and the substitutes among ``networks``."""
        from drfhq_lib.eval.figures import UNTRAINED
        from drfhq_lib.provenance import label_for_figure

        caption = label_for_figure(networks, self.note)
        return "; ".join(p for p in ["" if self.trained else UNTRAINED, caption] if p)


@dataclass(frozen=True)
class CompositeParams:
    erode: int = 8  # pixels, at the original image's scale of a 1024 px face
    blur_sigma: float = 6.0
    colour_match: float = 0.0  # 0: off, 1: full match of the face's colour statistics


def _scaled(params: CompositeParams, alignment: Alignment) -> tuple[int, float]:
    """Erosion and blur are given for a 1024 px aligned face; scale them to this face's size
    in the original image, so a small face in a full-body render gets a proportional seam."""
    side = float(np.hypot(*(alignment.quad[3] - alignment.quad[0])))
    scale = side / 1024.0
    return max(0, round(params.erode * scale)), params.blur_sigma * scale


def face_mask_aligned(result: torch.Tensor, alignment: Alignment, prefer: str
                      ) -> tuple[torch.Tensor, Resolved]:
    """Mask of the result in aligned space. The landmark substitute uses the input's landmarks
    (the result keeps the input's face layout), so it also works when a result has no face
    dlib can find."""
    r = weights.resolve("bisenet-faceparse", prefer)
    if r.is_official:
        return faceparse.face_mask(result, prefer)
    size = result.shape[-1]
    lm = alignment.aligned_landmarks * (size / alignment.size)
    return torch.from_numpy(faceparse.landmark_mask(lm, size, size))[None, None].float(), r


def composite_steps(result: torch.Tensor, original: Image.Image, alignment: Alignment,
                    mask: torch.Tensor, params: CompositeParams) -> dict[str, torch.Tensor]:
    """Eq. 5 in the original image's coordinates, every step kept (Fig. 17): the result and
    its face mask warped back, the mask eroded, then blurred, and the blend. Images [1, 3, H, W]
    in [-1, 1], masks [1, 1, H, W] in [0, 1], all at the original image's size."""
    warped, square = paste_back(result, original, alignment, None, return_mask=True)
    _, face = paste_back(result, original, alignment, mask[0, 0].cpu(), return_mask=True)
    erode_px, sigma = _scaled(params, alignment)
    mask_warped = torch.from_numpy(face * square)[None, None]
    mask_eroded = composite.erode(mask_warped, erode_px)
    mask_soft = composite.feather(mask_eroded, sigma)
    x = pil_to_tensor(original)
    x_res = pil_to_tensor(warped)
    if params.colour_match:
        x_res = composite.match_colour(x_res, x, mask_soft, params.colour_match)
    return {"original": x, "warped": x_res, "mask_warped": mask_warped,
            "mask_eroded": mask_eroded, "mask_soft": mask_soft,
            "final": composite.blend(x_res, x, mask_soft)}


def composite_into_original(result: torch.Tensor, original: Image.Image, alignment: Alignment,
                            mask: torch.Tensor, params: CompositeParams) -> Image.Image:
    """Eq. 5 in the original image's coordinates: warp result and mask back, soften, blend."""
    return tensor_to_pil(composite_steps(result, original, alignment, mask, params)["final"])[0]


def postprocess_steps(path: Path, latent_file: Path, nets: Networks, size: int | None = None,
                      prefer: str = "auto", params: CompositeParams = CompositeParams(),
                      device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Fig. 17 for one enhanced input: its projected latent rendered by G_real, the aligned
    result and mask, then every step of ``composite_steps``."""
    size = size or nets.G_real.img_resolution
    alignment = align_detected(path, size=size)
    ws = load_latent(latent_file)["ws"][None].to(device)
    result = resize(render(nets.G_real, ws), size)
    mask, _ = face_mask_aligned(result, alignment, prefer)
    steps = composite_steps(result, load_image(path), alignment, mask, params)
    return {"aligned_input": pil_to_tensor(alignment.image), "result": result.cpu(),
            "mask": mask.cpu(), **steps}


def gallery(out_dir: Path, names: list[str] | None = None) -> Image.Image:
    """The comparison strips of an enhance run stacked into one picture (Fig. 1/4 layout)."""
    files = [Path(out_dir) / "compare" / f"{n}.png" for n in names] if names else \
        sorted((Path(out_dir) / "compare").glob("*.png"))
    if not files:
        raise DrfhqError(f"{out_dir}: no comparison strips; run enhance first")
    strips = [Image.open(f).convert("RGB") for f in files]
    canvas = Image.new("RGB", (max(s.width for s in strips), sum(s.height for s in strips)),
                       (255, 255, 255))
    y = 0
    for strip in strips:
        canvas.paste(strip, (0, y))
        y += strip.height
    return canvas


def _stamp(image: Image.Image, text: str) -> Image.Image:
    out = image.copy()
    draw = ImageDraw.Draw(out)
    draw.rectangle([0, 0, out.width, 14], fill=(160, 0, 0))
    draw.text((3, 2), text, fill=(255, 255, 255))
    return out


def comparison_strip(panels: list[Image.Image], height: int, warning: str = "") -> Image.Image:
    scaled = [p.resize((max(1, p.width * height // p.height), height), Image.Resampling.LANCZOS)
              for p in panels]
    strip = Image.new("RGB", (sum(p.width for p in scaled), height), (255, 255, 255))
    x = 0
    for p in scaled:
        strip.paste(p, (x, 0))
        x += p.width
    return _stamp(strip, warning) if warning else strip



def _row(path: Path, status: str, start: float | None = None, reason: str = "",
         final_lpips: str = "", output: str = "") -> dict:
    seconds = f"{time.perf_counter() - start:.2f}" if start is not None else ""
    return {"input": str(path), "status": status, "reason": reason, "seconds": seconds,
            "final_lpips": final_lpips, "output": output}


def enhance_files(inputs: list[Path], out_dir: Path, nets: Networks,
                  params: ProjectionParams = ProjectionParams(), batch: int = 8,
                  size: int | None = None, prefer: str = "auto",
                  composite_params: CompositeParams = CompositeParams(),
                  device: torch.device | str = "cpu", overwrite: bool = False,
                  progress: bool = True, init=None) -> dict[str, dict]:
    """Run the whole pipeline on ``inputs``; returns the manifest rows by input path.

    ``init``: ``targets -> W+`` the projection starts from (an encoder's, see
    :mod:`drfhq_lib.infer.encoder_init`); default w_avg, the paper's start.

    Inputs whose file stems collide (``a/x.png`` and ``b/x.png``, ``x.png`` and ``x.jpg``) are
    all enhanced, under the distinct names of :func:`output_names`; their rows say so.

    The inputs go in blocks of ``batch`` consecutive inputs, one projection batch each; input i
    is projected with seed ``params.seed + i``, so a rerun that finishes an interrupted job
    gives what one uninterrupted run gives. Under torchrun (after
    :func:`drfhq_lib.infer.sharding.join`) each process enhances its share of the blocks and
    every process returns the rows of the merged manifest (:mod:`drfhq_lib.infer.sharding`)."""
    device = torch.device(device)
    out_dir = Path(out_dir)
    names = output_names(inputs)
    paths = list(names)
    size = size or nets.G_rendering.img_resolution
    ranks = sharding.current_ranks()
    manifest_path = out_dir / "manifest.csv"
    # scanned before the start barrier: every rank deals the same shares
    pending = [overwrite or not (out_dir / f"{names[p]}.png").exists() for p in paths]
    settings = run_settings(nets, params, size, composite_params, init)
    if not overwrite and any(not todo for todo in pending):
        check_settings(out_dir, settings)
    if ranks.main:  # no rank writes before the start barrier
        _remove_temporaries(out_dir)
    earlier = sharding.start(manifest_path, MANIFEST_FIELDS, "input", ranks)
    if ranks.main:
        write_json_atomic(out_dir / SETTINGS_FILE, settings)
    share = sharding.deal(pending, batch, ranks)
    own = manifest_path if ranks.world == 1 else part_path(manifest_path, ranks.rank)
    with Manifest(own, MANIFEST_FIELDS, key="input") as manifest:
        if ranks.main:
            for path, todo in zip(paths, pending):
                if not todo and earlier.get(str(path)) is None:
                    manifest.add(_row(path, "exists", reason=_rename_note(path, names[path]),
                                      output=str(out_dir / f"{names[path]}.png")))
        projector = _BlockProjector(nets, params, prefer, device, init) if share else None
        desc = "enhancing" + (f" (rank {ranks.rank}/{ranks.world})" if ranks.world > 1 else "")
        for block in tqdm(share, desc=desc, unit="batch", disable=not progress):
            todo = _aligned_inputs({paths[i]: names[paths[i]] for i in block}, size, manifest)
            if overwrite:  # each rank its own block's: a redone input is projected again
                for name in todo:
                    (out_dir / "latents" / f"{name}.npz").unlink(missing_ok=True)
            if todo:
                seeds = {names[paths[i]]: params.seed + i for i in block}
                _enhance_aligned(todo, out_dir, nets, projector, seeds, size, prefer,
                                 composite_params, device, progress, manifest)
        rows = dict(manifest.rows)
    return rows if ranks.world == 1 else \
        sharding.finish(manifest_path, MANIFEST_FIELDS, "input", ranks)


SETTINGS_FILE = "settings.json"  # what the results in an output folder were made with


def run_settings(nets: Networks, params: ProjectionParams, size: int,
                 composite_params: CompositeParams, init) -> dict:
    """Everything an enhance result depends on (not the batch size: each input has its seed)."""
    return {"G_real": nets.real_label, "G_rendering": nets.rendering_label, "size": size,
            "init": init_setting(init), "projection": params.as_dict(),
            "composite": asdict(composite_params)}


def _flat(settings: dict, prefix: str = "") -> dict:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    flat = {}
    for key, value in settings.items():
        flat.update(_flat(value, f"{prefix}{key}.") if isinstance(value, dict)
                    else {prefix + key: value})
    return flat


def check_settings(out_dir: Path, settings: dict) -> None:
    """Refuse to resume into ``out_dir`` when its results were made with other settings: kept
    outputs would then be reported as results of these."""
    file = out_dir / SETTINGS_FILE
    if not file.exists():
        return
    before, now = _flat(json.loads(file.read_text())), _flat(json.loads(json.dumps(settings)))
    changed = [f"{key}: {before.get(key)!r} -> {now.get(key)!r}"
               for key in sorted(before.keys() | now.keys()) if before.get(key) != now.get(key)]
    if changed:
        raise DrfhqError(f"{out_dir}: its results were made with other settings "
                         f"({'; '.join(changed[:4])}; see {file}); pass --overwrite (overwrite="
                         "True) to redo them, or write to another folder")


def _remove_temporaries(out_dir: Path) -> None:
    """The temporary files (``files.atomic_path``) of a job that was killed while writing."""
    for folder in (out_dir, out_dir / "compare", out_dir / "latents"):
        for tmp in folder.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)


def output_names(inputs) -> dict[Path, str]:
    """The output name (stem) of each input, distinct even where file stems collide
    (:func:`drfhq_lib.data.manifest.unique_stems`); repeated inputs count once."""
    return unique_stems(list(map(Path, inputs)))


def renamed_inputs(inputs) -> dict[Path, str]:
    """The inputs whose output name is not their own stem (because of a collision)."""
    return {p: n for p, n in output_names(inputs).items() if n != p.stem}


def _rename_note(path: Path, name: str) -> str:
    return "" if name == path.stem else \
        f"written as {name}.png: another input has the stem {path.stem!r}"


def _aligned_inputs(names: dict[Path, str], size: int, manifest: Manifest
                    ) -> dict[str, tuple[Path, Alignment, float]]:
    """Align the inputs of one block; failures go straight to the manifest."""
    todo = {}
    for path, name in names.items():
        start = time.perf_counter()
        try:
            todo[name] = (path, align_detected(path, size=size), start)
        except (DrfhqError, OSError, ValueError) as err:
            manifest.add(_row(path, "failed", start, str(err)))
    return todo


class _BlockProjector:
    """What every block's projection shares, made once per process: the LPIPS network and
    G_rendering's w statistics."""

    def __init__(self, nets: Networks, params: ProjectionParams, prefer: str,
                 device: torch.device, init=None):
        self.params, self.init = params, init
        self.lpips = build_lpips(prefer, device)
        self.w_stats = w_statistics(nets.G_rendering, params, device)


def _enhance_aligned(todo, out_dir: Path, nets: Networks, projector: _BlockProjector,
                     seeds: dict[str, int], size: int, prefer: str,
                     composite_params: CompositeParams, device: torch.device, progress: bool,
                     manifest: Manifest) -> None:
    """One block: its aligned inputs projected as one batch, then rendered and pasted back."""
    resolution = nets.G_rendering.img_resolution
    note = nets.note.replace("→", "->")  # the stamp's bitmap font has no arrow
    warning = note if nets.trained else "UNTRAINED networks: not a result"
    params = projector.params
    targets = {name: resize(pil_to_tensor(a.image, device), resolution)[0]
               for name, (_, a, _) in todo.items()}
    latents = project_to_files(nets.G_rendering, targets, out_dir / "latents", projector.lpips,
                               params, len(targets), progress, seeds=seeds,
                               w_stats=projector.w_stats, init=projector.init)
    for name, (path, alignment, start) in todo.items():
        try:
            latent = load_latent(latents[name])
            ws = latent["ws"][None].to(device)
            result = resize(render(nets.G_real, ws), size)
            reconstruction = resize(render(nets.G_rendering, ws), size)
            mask, _ = face_mask_aligned(result, alignment, prefer)
            original = load_image(path)
            final = composite_into_original(result, original, alignment, mask, composite_params)
            if warning:
                final = _stamp(final, warning)
            panels = [original, alignment.image, *tensor_to_pil(reconstruction),
                      *tensor_to_pil(result), final]
            write_png_atomic(out_dir / "compare" / f"{name}.png",
                             comparison_strip(panels, max(256, min(size, 512)), warning))
            write_png_atomic(out_dir / f"{name}.png", final)  # last: it marks the input done
            manifest.add(_row(path, "ok", start, _rename_note(path, name),
                              final_lpips=f"{latent['final_distance']:.4f}",
                              output=str(out_dir / f"{name}.png")))
        except (DrfhqError, OSError, ValueError, RuntimeError) as err:
            manifest.add(_row(path, "failed", start, str(err)))


# ----------------------------------------------------------------------------- networks

UNTRAINED_KWARGS = dict(z_dim=512, w_dim=512, channel_base=2048, channel_max=128,
                        mapping_kwargs={"num_layers": 8})


def untrained_generator(resolution: int, device, seed: int = 0) -> torch.nn.Module:
    """The registry's 'stylegan2-untrained-small' substitute: random weights, never a result."""
    from drfhq_lib.nets import Generator

    torch.manual_seed(seed)
    G = Generator(img_resolution=resolution, **UNTRAINED_KWARGS)
    return G.eval().requires_grad_(False).to(device)


def generator_from_file(path: str | Path, device) -> torch.nn.Module:
    """G_ema (else G) of a network file, or of the newest snapshot of a fine-tuning run folder."""
    from drfhq_lib.nets import load_network

    if not Path(path).exists():
        raise DrfhqError(f"{path}: no such network file or fine-tuning run folder")
    if Path(path).is_dir():
        from drfhq_lib.finetune import latest_snapshot

        snapshot = latest_snapshot(path)
        if snapshot is None:
            raise DrfhqError(f"{path}: no complete fine-tuning snapshot in this folder")
        path = snapshot.network_file
    nets = load_network(path, device=device)
    G = nets.get("G_ema") or nets.get("G")
    if G is None:
        raise DrfhqError(f"{path}: no generator (G_ema or G) in this network file")
    return G.eval().requires_grad_(False)


MINIWORLD = "miniworld"  # the keyword that names the committed mini-world networks


def _mini_world(which: str, device) -> tuple[torch.nn.Module, str, list[Resolved]]:
    from drfhq_lib.miniworld import models

    name = models.real_name(models.RESOLUTION) if which == "real" \
        else models.rendering_name(models.RESOLUTION)
    G = models.load_generator(name, device)
    resolved = [weights.resolve(name, "official")]
    return G, f"{name} ({models.WORLD_NOTE})", resolved


def _mini_world_available() -> bool:
    from drfhq_lib.miniworld import models

    return models.available()


def load_generators(real: str | None, rendering: str | None, device, *,
                    allow_untrained: bool = False, untrained_size: int = 64) -> Networks:
    """G_real and G_rendering from files, the paper's networks, or the mini world's.

    ``real``: a network file, ``"miniworld"``, or None: the official StyleGAN2-ADA FFHQ when it
    is installed, else the mini world's G_real_mini. ``rendering``: a file or run folder,
    ``"miniworld"``, or None, which is allowed when G_real is the mini world's (its own
    G_rendering_mini is used). Only where no trained network exists at all (the mini-world
    files deleted) does ``allow_untrained`` put in labelled untrained stand-ins.
    """
    resolved: list[Resolved] = []
    trained, world = True, ""
    if real is None:
        official = weights.get("stylegan2-ffhq").find()
        # a user's G_rendering was fine-tuned from FFHQ: it needs that G_real, not the mini world's
        mini = rendering in (None, MINIWORLD) and _mini_world_available()
        real = str(official) if official else MINIWORLD if mini else None
        if official:
            resolved.append(weights.resolve("stylegan2-ffhq", "official"))
    if real == MINIWORLD:
        G_real, real_label, found = _mini_world("real", device)
        resolved += found
        world = MINIWORLD
    elif real is not None:
        G_real = generator_from_file(real, device)
        real_label = "StyleGAN2-ADA FFHQ" if resolved else Path(real).name
    elif allow_untrained and rendering is None:
        G_real = untrained_generator(untrained_size, device)
        real_label, trained = "stylegan2-untrained-small (UNTRAINED)", False
    else:
        weights.official_path("stylegan2-ffhq")  # raises, saying how to get ffhq.pkl
    if rendering == MINIWORLD or (rendering is None and world == MINIWORLD):
        G_rendering, rendering_label, found = _mini_world("rendering", device)
        resolved += found
    elif rendering is not None:
        G_rendering, rendering_label = generator_from_file(rendering, device), Path(rendering).name
    elif allow_untrained:
        G_rendering, rendering_label = G_real, "G_real itself (not fine-tuned)"
        trained = False
    else:
        raise DrfhqError("pass --rendering NET: a G_rendering fine-tuned with `drfhq finetune` "
                         "(or --real miniworld --rendering miniworld for the mini world's)")
    if G_real.img_resolution != G_rendering.img_resolution or G_real.num_ws != G_rendering.num_ws:
        raise DrfhqError(f"G_real ({G_real.img_resolution} px) and G_rendering "
                         f"({G_rendering.img_resolution} px) must share one W+ space")
    return Networks(G_real, G_rendering, real_label, rendering_label, trained, resolved, world)


# ----------------------------------------------------------------------------- samples

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "renders"


def demo_inputs(limit: int = 3) -> list[Path]:
    """The bundled sample renders the demo enhances: ``limit`` portraits and one full body."""
    return sorted(SAMPLES.glob("*_portrait.png"))[:limit] + sorted(SAMPLES.glob("*_body.png"))[:1]


def mask_statistics(steps: dict[str, torch.Tensor]) -> dict[str, float]:
    """How much of the original image each mask of ``composite_steps`` covers (pixel sums),
    and how far the final composite departs from the original inside and outside the mask."""
    soft = steps["mask_soft"]
    change = (steps["final"] - steps["original"]).abs().mean(dim=1, keepdim=True)
    inside = soft > 0.5
    return {
        "pixels_mask_warped": float(steps["mask_warped"].sum()),
        "pixels_mask_eroded": float(steps["mask_eroded"].sum()),
        "pixels_mask_soft": float(soft.sum()),
        "mean_change_inside": float(change[inside].mean()) if inside.any() else 0.0,
        "max_change_outside": float(change[soft == 0].max()) if (soft == 0).any() else 0.0,
    }
