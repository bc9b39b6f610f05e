"""Fig. 2 as an image grid: one column per latent, rows input, G_rendering(w+), G_real(w+)."""

from __future__ import annotations

from typing import Sequence

import torch


def latent_cell(text: str, size: int = 256):
    """A grey square saying where a column's latent came from (Fig. 2 (a) has no input image)."""
    from PIL import Image, ImageDraw

    cell = Image.new("RGB", (256, 256), (235, 235, 235))
    draw = ImageDraw.Draw(cell)
    draw.multiline_text((128, 128), text, fill=(40, 40, 40), anchor="mm", align="center",
                        font_size=28)
    return cell.resize((size, size))


def shared_latent_figure(seed_names: Sequence[str], portrait_names: Sequence[str],
                         faces: dict[str, torch.Tensor], real: torch.Tensor,
                         rendering: torch.Tensor, not_run: dict[str, str] | None = None,
                         input_missing: dict[str, str] | None = None, **decoration):
    """Fig. 2 as an image grid: one column per latent (seeds, then projected portraits, then
    portraits that could not be projected, with why), rows: input, G_rendering(w+), G_real(w+).
    ``decoration``: ``title``, ``warning``, ``note`` of ``figures.image_grid``."""
    from drfhq_lib.eval.figures import image_grid

    not_run, input_missing = not_run or {}, input_missing or {}
    blanks = [None] * len(not_run)
    reasons = ["" for _ in seed_names]
    input_row = [latent_cell(f"{n}\nz -> w+") for n in seed_names]
    for name in portrait_names:
        input_row.append(faces[name].cpu() if name in faces else None)
        reasons.append(input_missing.get(name, "" if name in faces else "input not found"))
    not_run_reasons = list(not_run.values())
    return image_grid(
        [input_row + blanks, [*rendering, *blanks], [*real, *blanks]],
        row_labels=["rendered input", "G_rendering(w+)", "G_real(w+)"],
        col_labels=[*seed_names, *portrait_names, *not_run],
        missing=[reasons + not_run_reasons, [""] * len(reasons) + not_run_reasons,
                 [""] * len(reasons) + not_run_reasons], **decoration)
