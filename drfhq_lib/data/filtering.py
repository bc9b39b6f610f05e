"""Manual filtering of aligned faces (the paper filters DRFHQ by hand, Sec. 3.1): the thumbnails.

The clickable grid is ``drfhq_lib.apps.filter_grid.RejectGrid``; the rejects list is read and
written by ``drfhq_lib.data.dataset.read_rejects`` / ``write_rejects`` and applied by
``drfhq_lib.data.dataset.apply_rejects`` (or ``drfhq dataset filter-apply``).
"""

from __future__ import annotations

import io
import os

from PIL import Image

from drfhq_lib.data.images import load_image


def thumbnail_png(path: str | os.PathLike, size: int = 128) -> bytes:
    """PNG bytes of a ``size`` px thumbnail (a grey tile with no picture for unreadable files)."""
    try:
        image = load_image(path)
        image.thumbnail((size, size), Image.Resampling.LANCZOS)
    except Exception:  # the grid must still open; the file shows as a blank tile
        image = Image.new("RGB", (size, size), (128, 128, 128))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
