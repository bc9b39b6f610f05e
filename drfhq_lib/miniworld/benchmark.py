"""The ground-truth benchmark's job: run each method on held-out R renders, score against P.

Every method ends in G_real_mini (or is the input itself):

* ``R input``: the R render, no method;
* ``projection into G_real``: Fig. 7's latent optimisation, then G_real;
* ``guided projection into G_real``: Fig. 11, the same plus λs L_sketch + λc L_color;
* ``ours (<variant>)``: project into G_rendering_mini (one Fig. 10 variant), render with G_real.

Two reference rows bound what G_real_mini can show at all: ``G_real(z_id)`` (the identity's own
latent) and ``projection of P into G_real``. Latents are files (``OUT/<method>/<id>.npz``), so an
interrupted run resumes. ``identity_table`` is the Tab. 2 analogue: G_rendering(w) for the w of
the identity's own z, against its R render.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from drfhq_lib.eval import groundtruth
from drfhq_lib.infer.projection import ProjectionParams, identity_guide, load_latent, \
    project_to_files, render
from drfhq_lib.nets.perceptual import gaussian_blur

REFERENCE_ROWS = ("reference: G_real(z_id)", "reference: projection of P into G_real")


def detail_transfer_oracle(R: torch.Tensor, P: torch.Tensor, blur_size: int, blur_sigma: float
                           ) -> torch.Tensor:
    """What a perfect method that keeps L_color's term could return: the R render's blurred
    image (what L_color holds G_rendering to, blurred as L_color blurs) plus the P render's
    detail above that blur. ``[N, 3, S, S]`` in [-1, 1], clamped."""
    low = gaussian_blur(R, blur_size, blur_sigma)
    return (low + P - gaussian_blur(P, blur_size, blur_sigma)).clamp(-1, 1)


@dataclass
class HeldOut:
    ids: list[str]
    R: torch.Tensor  # [N, 3, S, S] in [-1, 1]
    P: torch.Tensor
    z: torch.Tensor  # [N, z_dim]
    true_landmarks: np.ndarray  # [N, 68, 2], the renderer's, in aligned pixels
    P_landmarks: np.ndarray = field(default=None)  # dlib's on P, same box

    def __post_init__(self):
        if self.P_landmarks is None:
            boxes = [groundtruth.face_box(lm, 256 / self.P.shape[-1]) for lm in self.true_landmarks]
            self.P_landmarks = groundtruth.predicted_landmarks(self.P, boxes)


def load_heldout(folder, limit: int | None = None) -> HeldOut:
    from drfhq_lib.miniworld import aligned

    ids, R, z = aligned.load_aligned(folder, "R", limit)
    _, P, _ = aligned.load_aligned(folder, "P", limit)
    records = aligned.read_records(folder)[:limit]
    return HeldOut(ids, R, P, z, np.array([r["landmarks"] for r in records], np.float64))


def projected_outputs(G_project, G_show, targets, ids, folder: Path, distance, params, batch,
                      guide=None, init=None) -> torch.Tensor:
    """G_show's images of the W+ found by projecting ``targets`` into G_project from ``init``
    (default w_avg; latents saved as ``folder/<id>.npz``, so a rerun resumes)."""
    paths = project_to_files(G_project, dict(zip(ids, targets)), folder, distance, params,
                             batch=batch, progress=True, guide=guide, init=init)
    ws = torch.stack([load_latent(paths[i])["ws"] for i in ids])
    return render(G_show, ws.to(targets.device))


def method_outputs(data: HeldOut, G_real, renderings: dict, lpips_net, sketch_net, out,
                   params: ProjectionParams, batch: int = 25, guide_settings: dict | None = None,
                   init=None) -> dict[str, torch.Tensor]:
    """Each method's outputs for the held-out R renders (and the two reference rows). ``init``
    (default w_avg) starts every projection: the generators share one frozen mapping, so one
    encoder's W+ is a start for each of them."""
    out = Path(out)
    run = lambda G_project, targets, name, guide=None: projected_outputs(  # noqa: E731
        G_project, G_real, targets, data.ids, out / name, lpips_net, params, batch, guide, init)
    outputs = {"R input": data.R}
    outputs["projection into G_real"] = run(G_real, data.R, "direct")
    guide = identity_guide(sketch_net, lpips_net, **(guide_settings or {}))
    outputs["guided projection into G_real"] = run(G_real, data.R, "guided", guide)
    for variant, G_rendering in renderings.items():
        outputs[f"ours ({variant})"] = run(G_rendering, data.R, f"ours-{variant}")
    with torch.no_grad():
        outputs[REFERENCE_ROWS[0]] = torch.cat([G_real(z, noise_mode="const")
                                                for z in data.z.split(batch)])
    outputs[REFERENCE_ROWS[1]] = run(G_real, data.P, "P-direct")
    return outputs


def benchmark_table(data: HeldOut, outputs: dict[str, torch.Tensor], lpips_net) -> list[dict]:
    """One row per method: LPIPS, PSNR, landmark error against P, with bootstrap intervals, and
    a last row ``P render (dlib vs renderer landmarks)``: how far dlib's points on the P render
    are from the renderer's true ones, the floor of the landmark column."""
    rows = [groundtruth.score(o, data.P, data.P_landmarks, data.true_landmarks, lpips_net)
            .row(name) for name, o in outputs.items()]
    floor = groundtruth.landmark_error(data.P_landmarks, data.true_landmarks)
    low, high = groundtruth.bootstrap_interval(floor)
    rows.append({"method": "P render (dlib vs renderer landmarks)", "n": len(floor),
                 "landmarks": float(np.nanmean(floor)), "landmarks_ci_low": low,
                 "landmarks_ci_high": high})
    return rows


def identity_table(data: HeldOut, G_real, renderings: dict, lpips_net,
                   batch: int = 25) -> list[dict]:
    """Tab. 2 analogue: G(w_id) against the R render of identity id, where w_id is the
    mapping of its own z (the mapping is frozen, so w is the same in every generator)."""
    with torch.no_grad():
        ws = torch.cat([G_real.mapping(z) for z in data.z.split(batch)])
        gens = {"G_real (not fine-tuned)": G_real, **{f"G_rendering ({v})": G
                                                      for v, G in renderings.items()}}
        images = {name: render(G, ws, batch) for name, G in gens.items()}
    boxes_ref = groundtruth.predicted_landmarks(
        data.R, [groundtruth.face_box(lm, 256 / data.R.shape[-1]) for lm in data.true_landmarks])
    return [groundtruth.score(img, data.R, boxes_ref, data.true_landmarks, lpips_net).row(name)
            for name, img in images.items()]
