"""Manual filtering app (ipywidgets): a paged grid of thumbnails that writes a rejects list.

``RejectGrid(folder, rejects_file)`` shows the aligned images as a paged grid of thumbnails,
each with a button under it: click (or Tab to it and press Space/Enter) to reject, again to take
it back. Every click rewrites the rejects file atomically (one file name per line), so closing
the notebook loses nothing and reopening the grid shows the earlier choices.
``drfhq_lib.data.dataset.apply_rejects`` (or ``drfhq dataset filter-apply``) applies the list.

The widget logic needs no browser: ``grid.buttons[i].click()``, ``grid.next_button.click()``
work from Python, which is how the tests drive it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from drfhq_lib.data.dataset import read_rejects, write_rejects
from drfhq_lib.data.filtering import thumbnail_png
from drfhq_lib.data.images import list_images


class RejectGrid:
    """A paged thumbnail grid that writes a rejects list.

    ``images``: a folder of aligned images or a list of files. ``rejects_file``: the list
    (read if it exists, rewritten on every click). ``page_size`` thumbnails per page,
    ``columns`` per row, ``thumb_size`` pixels. Display with ``display(grid.widget)`` (or just
    ``grid`` as a cell's last expression).
    """

    def __init__(self, images: str | os.PathLike | Sequence[str | os.PathLike],
                 rejects_file: str | os.PathLike, page_size: int = 24, columns: int = 6,
                 thumb_size: int = 128):
        import ipywidgets as widgets

        self._widgets = widgets
        if isinstance(images, (str, os.PathLike)):
            self.files = list_images(images)
        else:
            self.files = [Path(p) for p in images]
        self.rejects_file = Path(rejects_file)
        self.rejected: set[str] = read_rejects(self.rejects_file)
        self.page_size = max(1, int(page_size))
        self.columns = max(1, int(columns))
        self.thumb_size = int(thumb_size)
        self.page = 0
        self._thumbs: dict[Path, bytes] = {}

        self.prev_button = widgets.Button(description="◀ Previous page", tooltip="previous page")
        self.next_button = widgets.Button(description="Next page ▶", tooltip="next page")
        self.prev_button.on_click(lambda _: self.show_page(self.page - 1))
        self.next_button.on_click(lambda _: self.show_page(self.page + 1))
        self.status = widgets.HTML()
        self.grid = widgets.GridBox(layout=widgets.Layout(
            grid_template_columns=f"repeat({self.columns}, {self.thumb_size + 16}px)"))
        self.widget = widgets.VBox([
            widgets.HBox([self.prev_button, self.next_button, self.status]), self.grid])
        self.buttons: list = []
        self.show_page(0)

    @property
    def pages(self) -> int:
        return max(1, -(-len(self.files) // self.page_size))

    def page_files(self) -> list[Path]:
        start = self.page * self.page_size
        return self.files[start:start + self.page_size]

    def _thumbnail(self, path: Path) -> bytes:
        if path not in self._thumbs:
            self._thumbs[path] = thumbnail_png(path, self.thumb_size)
        return self._thumbs[path]

    def _style(self, button, name: str) -> None:
        rejected = name in self.rejected
        button.description = f"{'Unreject' if rejected else 'Reject'} {name}"
        button.button_style = "danger" if rejected else ""
        button.icon = "times" if rejected else "check"

    def _toggle(self, name: str, button) -> None:
        self.rejected.symmetric_difference_update({name})
        write_rejects(self.rejects_file, self.rejected)
        self._style(button, name)
        self._update_status()

    def _cell(self, path: Path):
        widgets = self._widgets
        image = widgets.Image(value=self._thumbnail(path), format="png",
                              layout=widgets.Layout(width=f"{self.thumb_size}px"))
        button = widgets.Button(tooltip=f"reject or keep {path.name}",
                                layout=widgets.Layout(width=f"{self.thumb_size}px"))
        self._style(button, path.name)
        button.on_click(lambda b, name=path.name: self._toggle(name, b))
        self.buttons.append(button)
        return widgets.VBox([image, button])

    def _update_status(self) -> None:
        self.status.value = (f"&nbsp;page {self.page + 1}/{self.pages} · "
                             f"{len(self.files)} images · {len(self.rejected)} rejected · "
                             f"list: <code>{self.rejects_file}</code>")

    def show_page(self, page: int) -> None:
        """Show page ``page`` (clamped to the existing pages)."""
        self.page = min(max(0, page), self.pages - 1)
        self.buttons = []
        self.grid.children = [self._cell(p) for p in self.page_files()]
        self.prev_button.disabled = self.page == 0
        self.next_button.disabled = self.page >= self.pages - 1
        self._update_status()

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)
