"""Fig. 5 / Fig. 16: full-body (apparel display) renders before and after the paste-back.

Each render goes through the library's own pipeline (``infer.enhance.enhance_files``: align,
project into G_rendering, render the W+ with G_real, face mask, warp back, erode, blur, blend;
Sec. 3.3 and Sec. 8, resumable), then ``enhance.postprocess_steps`` gives every step in the
render's coordinates. The figure shows, per render: the render (before), the face mask warped
back (m, the face parser's or its landmark substitute's), the softened mask m-hat of Eq. 5,
the composite (after), and the face region of the render and of the composite enlarged, since
the face of a full-body render is small (~76 px in the 512 x 768 samples). The table gives
each render's projection distance and the masks' statistics (``enhance.mask_statistics``).

Compute and figure drawing only; the notebook writes the files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import torch

from drfhq_lib.errors import DrfhqError
from drfhq_lib.eval.figures import UNTRAINED, cell_text, image_grid
from drfhq_lib.infer.enhance import (CompositeParams, Networks, enhance_files, mask_statistics,
                                     output_names, postprocess_steps)
from drfhq_lib.infer.projection import ProjectionParams, load_latent
from drfhq_lib.nets import weights
from drfhq_lib.nets.weights import Resolved

COLUMNS = ["render (before)", "face mask m", "soft mask m\u0302 (Eq. 5)", "pasted back (after)",
           "face, before", "face, after"]


@dataclass
class FullbodyRun:
    """One row per render (its numbers) and its panels (None cells where it failed)."""

    rows: list[dict]
    panels: list[list]
    missing: list[list[str]]
    row_labels: list[str]
    networks: list[Resolved] = field(default_factory=list)
    trained: bool = False


def face_box(mask: torch.Tensor, margin: float = 0.5, min_side: int = 16
             ) -> tuple[int, int, int, int] | None:
    """A square ``(x0, y0, x1, y1)`` around the mask's non-zero pixels ([1, 1, H, W]), its
    side the larger extent times ``1 + 2 margin`` (at least ``min_side``), moved inside the
    image (and cut to it where the image is smaller); None for an empty mask."""
    ys, xs = torch.nonzero(mask[0, 0] > 0, as_tuple=True)
    if len(xs) == 0:
        return None
    h, w = mask.shape[-2:]
    x0, x1, y0, y1 = int(xs.min()), int(xs.max()) + 1, int(ys.min()), int(ys.max()) + 1
    side = min(max(min_side, round(max(x1 - x0, y1 - y0) * (1 + 2 * margin))), h, w)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left = int(min(max(0, round(cx - side / 2)), w - side))
    top = int(min(max(0, round(cy - side / 2)), h - side))
    return left, top, left + side, top + side


def _grey(mask: torch.Tensor) -> torch.Tensor:
    """A [1, 1, H, W] mask in [0, 1] as a [3, H, W] image in [-1, 1] (white = 1)."""
    return (mask[0] * 2 - 1).expand(3, -1, -1)


def _crop(image: torch.Tensor, box: tuple[int, int, int, int]) -> torch.Tensor:
    x0, y0, x1, y1 = box
    return image[0, :, y0:y1, x0:x1]


def _panels(steps: dict[str, torch.Tensor]) -> tuple[list, tuple | None]:
    box = face_box(steps["mask_warped"])
    cells = [steps["original"][0], _grey(steps["mask_warped"]), _grey(steps["mask_soft"]),
             steps["final"][0]]
    faces = [_crop(steps["original"], box), _crop(steps["final"], box)] if box else [None, None]
    return cells + faces, box


def _render_row(path: Path, name: str, enhanced: dict, out_dir: Path, nets: Networks,
                size: int | None, prefer: str, composite_params: CompositeParams,
                device) -> tuple[dict, list, str]:
    """The row, the panels and the reason (for failed cells) of one render."""
    row = {"input": str(path), "status": enhanced.get("status", "failed"),
           "reason": enhanced.get("reason", "not in the enhance manifest")}
    latent = out_dir / "latents" / f"{name}.npz"
    if row["status"] not in ("ok", "exists") or not latent.exists():
        return {**row, "status": "failed"}, [None] * len(COLUMNS), row["reason"]
    try:
        steps = postprocess_steps(path, latent, nets, size, prefer, composite_params, device)
        final_distance = load_latent(latent)["final_distance"]
    except (DrfhqError, OSError, ValueError, RuntimeError) as err:
        reason = f"{type(err).__name__}: {err}"
        return {**row, "status": "failed", "reason": reason}, [None] * len(COLUMNS), reason
    cells, box = _panels(steps)
    row.update({"status": "ok", "final_lpips": f"{final_distance:.4f}",
                "height": steps["original"].shape[-2], "width": steps["original"].shape[-1],
                "face_box": "" if box is None else " ".join(map(str, box)),
                **{k: f"{v:.4f}" for k, v in mask_statistics(steps).items()},
                "output": str(out_dir / f"{name}.png")})
    return row, cells, "" if box else "empty face mask"


def fullbody_run(inputs: Iterable[str | Path], out_dir: str | Path, nets: Networks,
                 params: ProjectionParams = ProjectionParams(), batch: int = 8,
                 size: int | None = None, prefer: str = "auto",
                 composite_params: CompositeParams = CompositeParams(),
                 device: torch.device | str = "cpu", progress: bool = True, init=None
                 ) -> FullbodyRun:
    """Enhance every render (resumable: ``OUT/<name>.png``, ``OUT/latents``, the manifest),
    then collect its steps in the render's coordinates for the table and the figure; ``init``
    as in :func:`~drfhq_lib.infer.enhance.enhance_files`."""
    out_dir, paths = Path(out_dir), list(dict.fromkeys(Path(p) for p in inputs))
    if not paths:
        raise DrfhqError("no full-body renders given: pass image files or a folder of them "
                         "(e.g. samples/renders/*_body.png)")
    manifest = enhance_files(paths, out_dir, nets, params, batch, size, prefer,
                             composite_params, device, progress=progress, init=init)
    networks = [*nets.resolved, weights.resolve("lpips-vgg16", prefer),
                weights.resolve("lpips-heads"), weights.resolve("bisenet-faceparse", prefer)]
    run = FullbodyRun([], [], [], [], networks, nets.trained)
    for path, name in output_names(paths).items():
        row, cells, reason = _render_row(path, name, manifest.get(str(path), {}), out_dir, nets,
                                         size, prefer, composite_params, device)
        run.rows.append({**row, "trained": str(nets.trained).lower()})
        run.panels.append(cells)
        run.missing.append([cell_text(reason[:100]) if c is None else "" for c in cells])
        label = path.stem + (f"\nLPIPS {row['final_lpips']}" if row["status"] == "ok" else "")
        run.row_labels.append(label)
    return run


def fullbody_table(run: FullbodyRun) -> list[dict]:
    """Rows with every column present (the CSV takes its columns from the first row)."""
    columns = list(dict.fromkeys(k for row in run.rows for k in row))
    return [{k: row.get(k, "") for k in columns} for row in run.rows]


def fullbody_figure(run: FullbodyRun, nets: Networks,
                    title: str = "Fig. 5 / Fig. 16: full-body renders before and after the "
                                 "paste-back"):
    """The grid: one row per render, stamped when the networks are untrained stand-ins and
    noted when they are the mini world's."""
    from drfhq_lib.provenance import label_for_figure

    note = label_for_figure(run.networks, nets.note)
    return image_grid(run.panels, run.row_labels, COLUMNS, title=title,
                      warning="" if run.trained else UNTRAINED, note=note, missing=run.missing,
                      cell_inches=1.9)
