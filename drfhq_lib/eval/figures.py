"""Paper-style figures: image grids with labels, a stamped warning and a provenance note.

Every figure of the companion is written here so that each one carries, on the picture itself,
what produced it: ``warning`` (red, across the figure) for untrained stand-ins, ``note`` (small
print) naming offline substitutes. Cells are ``[3, H, W]`` tensors in [-1, 1], PIL images, or
``None`` for a method that was not run (the cell says so, with the reason when given).
"""

from __future__ import annotations

import textwrap

from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch
from PIL import Image

from drfhq_lib.files import atomic_path
from drfhq_lib.data.images import tensor_to_uint8

Cell = Union[torch.Tensor, Image.Image, np.ndarray, None]
UNTRAINED = "UNTRAINED stand-in networks — not a result"


def _pyplot():
    import matplotlib.pyplot as plt  # picks a non-interactive backend on headless machines

    return plt


CELL_CHARS = 24  # characters per line of a figure cell's text (1.6 inch cells, 6 pt)


def cell_text(text: str, width: int = CELL_CHARS) -> str:
    """Text wrapped to fit one figure cell."""
    return textwrap.fill(text, width, break_long_words=True)


def as_array(cell: Cell) -> np.ndarray | None:
    """An ``[H, W, 3]`` uint8 array (or ``None``) for any accepted cell type."""
    if cell is None:
        return None
    if isinstance(cell, torch.Tensor):
        if cell.ndim == 3:
            cell = cell[None]
        return tensor_to_uint8(cell)[0]
    if isinstance(cell, Image.Image):
        return np.asarray(cell.convert("RGB"))
    array = np.asarray(cell)
    if array.dtype != np.uint8 or array.ndim != 3:
        raise ValueError(f"expected an [H, W, 3] uint8 array, got {array.dtype} {array.shape}")
    return array


def image_grid(rows: Sequence[Sequence[Cell]], row_labels: Sequence[str] = (),
               col_labels: Sequence[str] = (), title: str = "", warning: str = "",
               note: str = "", missing: Sequence[Sequence[str]] | None = None,
               cell_inches: float = 1.6):
    """A matplotlib figure with one image per cell; ``missing[r][c]`` explains a ``None`` cell."""
    plt = _pyplot()
    n_rows, n_cols = len(rows), max((len(r) for r in rows), default=0)
    if not n_rows or not n_cols:
        raise ValueError("image_grid needs at least one row with one cell")
    fig, axes = plt.subplots(n_rows, n_cols, squeeze=False,
                             figsize=(cell_inches * n_cols + 0.6, cell_inches * n_rows + 0.6))
    for r in range(n_rows):
        for c in range(n_cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            image = as_array(rows[r][c]) if c < len(rows[r]) else None
            if image is not None:
                ax.imshow(image)
            else:
                reason = missing[r][c] if missing and c < len(missing[r]) else ""
                ax.text(0.5, 0.5, "not run" + (f"\n{reason}" if reason else ""), ha="center",
                        va="center", fontsize=6, wrap=True, transform=ax.transAxes)
                for spine in ax.spines.values():
                    spine.set_linestyle(":")
            if c == 0 and r < len(row_labels):
                ax.set_ylabel(row_labels[r], fontsize=8)
            if r == 0 and c < len(col_labels):
                ax.set_title(col_labels[c], fontsize=8)
    decorate(fig, title, warning, note)
    return fig


def decorate(fig, title: str = "", warning: str = "", note: str = "") -> None:
    """Title on top, ``warning`` in red across the middle, ``note`` in small print below."""
    if title:
        fig.suptitle(title, fontsize=10)
    if warning:
        fig.text(0.5, 0.5, warning, ha="center", va="center", color="red", fontsize=13,
                 weight="bold", bbox={"facecolor": "white", "alpha": 0.8})
    if note:
        fig.text(0.5, 0.005, note, ha="center", va="bottom", fontsize=6)


def save_figure(fig, path: str | Path, dpi: int = 120) -> Path:
    """Write ``fig`` atomically (format from the suffix, PNG by default) and close it."""
    plt = _pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path
