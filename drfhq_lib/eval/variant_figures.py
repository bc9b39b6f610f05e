"""Figures of the generator comparisons: Fig. 9/10 (the same latents through each variant) and
Fig. 13 (the same inputs enhanced with each G_rendering); a variant that did not run is a
"not run" cell with its reason."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import torch

from drfhq_lib.eval.variants import Variant


def _missing_cells(reason: str, count: int, width: int = 30) -> list[str]:
    """The reason of a variant that did not run, wrapped, in its first cell only."""
    import textwrap

    return [textwrap.fill(reason, width)] + [""] * (count - 1)


def comparison_figure(variants: Sequence[Variant], images: Mapping[str, torch.Tensor | None],
                      labels: Mapping[str, str] | None = None, generators_as: str = "rows",
                      **decoration):
    """An image grid of the same latents through each variant (Fig. 9: one row per generator;
    Fig. 10: ``generators_as="columns"``). A variant that did not run is a row or column of
    "not run" cells, the first one with its reason. ``decoration``: title, warning, note."""
    from drfhq_lib.eval.figures import image_grid

    labels = labels or {}
    count = max((len(x) for x in images.values() if x is not None), default=1)
    names = [labels.get(v.name, v.name) for v in variants]
    per_variant = [list(images[v.name]) if images.get(v.name) is not None else [None] * count
                   for v in variants]
    reasons = [_missing_cells(v.reason, count) for v in variants]
    latents = [f"latent {i}" for i in range(count)]
    if generators_as == "rows":
        return image_grid(per_variant, row_labels=names, col_labels=latents, missing=reasons,
                          **decoration)
    rows = [list(r) for r in zip(*per_variant)]
    return image_grid(rows, row_labels=latents, col_labels=names,
                      missing=[list(r) for r in zip(*reasons)], **decoration)


def enhancement_figure(inputs: Sequence[Path], renderings: Sequence[Variant],
                       pairs: Mapping[str, Sequence[tuple[torch.Tensor, torch.Tensor]]],
                       **decoration):
    """Fig. 13: one row per input: its aligned face, then each G_rendering's G_real result;
    "not run" cells (with the reason) for a G_rendering that did not run."""
    from drfhq_lib.eval.figures import image_grid

    def result(r: Variant, i: int, which: int):
        return pairs[r.name][i][which][0] if pairs.get(r.name) else None

    ran = [r for r in renderings if pairs.get(r.name)]
    rows = [[result(ran[0], i, 0) if ran else None] + [result(r, i, 1) for r in renderings]
            for i in range(len(inputs))] or [[None] * (1 + len(renderings))]
    missing = [["no input enhanced by every G_rendering" if not inputs else ""]
               + [r.reason for r in renderings] for _ in rows]
    return image_grid(rows, row_labels=[Path(p).stem for p in inputs],
                      col_labels=["input (aligned)"] + [f"{r.name}-based" for r in renderings],
                      missing=missing, **decoration)
