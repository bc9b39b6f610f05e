"""The 2AFC user-study app (ipywidgets) of Sec. 5.2.1 and Sec. 7; nothing else.

It draws a :class:`drfhq_lib.eval.study_responses.Session`: trials and tallies are in
:mod:`drfhq_lib.eval.study`, the responses file in :mod:`drfhq_lib.eval.study_responses`.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

from drfhq_lib.eval.study import Study, StudyError
from drfhq_lib.eval.study_responses import Session


class StudyApp:
    """ipywidgets front end of :class:`Session`: id box, Start, two images, two buttons.

    ``start``, ``left_button`` and ``right_button`` are ordinary ``ipywidgets.Button``s, so a
    test drives the app with ``app.start.click()``; display ``app.widget`` in a notebook."""

    def __init__(self, study: Study, responses: str | os.PathLike, image_width: int = 384,
                 **session_options):
        import ipywidgets as w

        self.study, self.responses, self.options = study, Path(responses), session_options
        self.session: Session | None = None
        self.participant = w.Text(description="Participant", placeholder="your participant id")
        self.start = w.Button(description="Start", button_style="primary")
        self.left_image = w.Image(width=image_width)
        self.right_image = w.Image(width=image_width)
        self.left_button = w.Button(description="left is more realistic", disabled=True,
                                    layout=w.Layout(width=f"{image_width}px"))
        self.right_button = w.Button(description="right is more realistic", disabled=True,
                                     layout=w.Layout(width=f"{image_width}px"))
        self.progress = w.Label("")
        self.message = w.HTML("Enter your participant id and press Start.")
        self.start.on_click(self.on_start)
        self.left_button.on_click(lambda _: self.on_choice("left"))
        self.right_button.on_click(lambda _: self.on_choice("right"))
        self.widget = w.VBox([
            w.HBox([self.participant, self.start, self.progress]), self.message,
            w.HBox([w.VBox([self.left_image, self.left_button]),
                    w.VBox([self.right_image, self.right_button])])])

    def on_start(self, _=None) -> None:
        try:
            self.session = Session(self.study, self.responses, self.participant.value,
                                   **self.options)
        except StudyError as err:
            self.message.value = html.escape(str(err))
            return
        self.participant.disabled = self.start.disabled = True
        self._show()

    def on_choice(self, side: str) -> None:
        if self.session is None:
            return
        try:
            self.session.answer(side)
        except (StudyError, OSError) as err:
            self.message.value = html.escape(f"not recorded: {err}")
            return
        self._show()

    def _show(self) -> None:
        done, total = self.session.progress
        self.progress.value = f"{done} / {total} answered"
        finished = self.session.finished
        self.left_button.disabled = self.right_button.disabled = finished
        if finished:
            self.left_image.value = self.right_image.value = b""
            self.message.value = (f"<b>Finished — thank you!</b> All {total} comparisons are "
                                  "recorded; you can close this page.")
            return
        trial, ours_side = self.session.current
        ours, other = Path(trial.path_ours), Path(trial.path_other)
        left, right = (ours, other) if ours_side == "left" else (other, ours)
        for image, path in ((self.left_image, left), (self.right_image, right)):
            image.format = path.suffix.lstrip(".").lower().replace("jpg", "jpeg") or "png"
            image.value = path.read_bytes()
        self.message.value = "Which image looks more like a real photograph?"
