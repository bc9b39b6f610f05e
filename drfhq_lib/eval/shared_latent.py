"""Fig. 2's table: the same W+ through G_real and G_rendering, compared by LPIPS, L2 and
identity similarity (and, for projected portraits, each render against the aligned input)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


@torch.no_grad()
def pair_rows(a: torch.Tensor, b: torch.Tensor, latents: Sequence[str], compared: str,
              lpips_net, embedder, size: int = 256) -> list[dict]:
    """One row per pair ``(a[i], b[i])``: LPIPS (at most ``size`` px), L2 and identity
    similarity, with the networks' labels. No face found: empty identity, ``faces_found``
    False (never a made-up number)."""
    from drfhq_lib.nets.identity import identity_similarity
    from drfhq_lib.eval.metrics import pair_table
    from drfhq_lib.nets.perceptual import resize

    if not len(latents):
        return []
    side = min(size, a.shape[-1])
    distances = pair_table([(resize(a, side), resize(b, side))], lpips_net)
    identity = identity_similarity(a, b, embedder)
    rows = []
    for i, name in enumerate(latents):
        similarity = identity.values[i]
        rows.append({"latent": name, "compared": compared, "lpips": distances.lpips[i],
                     "l2": distances.l2[i],
                     "identity_similarity": "" if np.isnan(similarity) else similarity,
                     "faces_found": not np.isnan(similarity), "lpips_net": distances.label,
                     "embedder": identity.label, "reason": ""})
    return rows


def shared_latent_rows(names: Sequence[str], real: torch.Tensor, rendering: torch.Tensor,
                       lpips_net, embedder, inputs: dict[str, torch.Tensor] | None = None,
                       failed: dict[str, str] | None = None, trained: bool = True) -> list[dict]:
    """Fig. 2's table. Per column ``names[i]``: G_rendering(w+) vs G_real(w+); for a projected
    portrait with its aligned input in ``inputs``, also the input vs each render; each entry of
    ``failed`` (name: reason) as a "not run" row. ``trained`` is stamped on every row."""
    inputs, failed = inputs or {}, failed or {}
    rows = pair_rows(rendering, real, names, "G_rendering(w+) vs G_real(w+)", lpips_net, embedder)
    pick = [i for i, name in enumerate(names) if name in inputs]
    if pick:
        with_input = [names[i] for i in pick]
        targets = torch.stack([inputs[name].cpu() for name in with_input])
        for label, images in (("G_rendering(w+)", rendering), ("G_real(w+)", real)):
            rows += pair_rows(targets, images[pick], with_input, f"input vs {label}", lpips_net,
                              embedder)
    rows += [{"latent": name, "compared": "not run", "lpips": "", "l2": "",
              "identity_similarity": "", "faces_found": False, "lpips_net": "", "embedder": "",
              "reason": reason} for name, reason in failed.items()]
    return [{**row, "trained": trained} for row in rows]
