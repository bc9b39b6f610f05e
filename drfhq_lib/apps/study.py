"""The user-study app (ipywidgets, inside Jupyter) of Sec. 5.2.1 (Fig. 6) and Sec. 7 (Fig. 15).

It draws a :class:`~drfhq_lib.eval.study_responses.ChoiceSession` (Fig. 6: all methods'
images of one input, one chosen) or a :class:`~drfhq_lib.eval.study_responses.Session`
(Fig. 15: two images, left or right). Trials and tallies are in :mod:`drfhq_lib.eval.study`,
the responses file in :mod:`drfhq_lib.eval.study_responses`. For participants on their own
devices serve the study as a web page instead: ``drfhq study serve`` (``apps.study_server``).
"""

from __future__ import annotations

import html
import os
from pathlib import Path

from drfhq_lib.eval.study import ChoiceStudy, StudyError
from drfhq_lib.eval.study_responses import session_for

QUESTION = {"inversion": "Which of these {n} images looks most like a real photograph? "
                         "Choose one.",
            "fullbody": "Which image looks more like a real photograph?"}


def image_format(path: Path) -> str:
    return path.suffix.lstrip(".").lower().replace("jpg", "jpeg") or "png"


class StudyApp:
    """ipywidgets front end of a study session: id box, Start, the images, one button each.

    ``start`` and ``buttons`` are ordinary ``ipywidgets.Button``s (for Fig. 15 also
    ``left_button`` and ``right_button``), so a test drives the app with ``app.start.click()``;
    display ``app.widget`` in a notebook."""

    def __init__(self, study, responses: str | os.PathLike, image_width: int | None = None,
                 **session_options):
        import ipywidgets as w

        self.study, self.responses, self.options = study, Path(responses), session_options
        self.session = None
        choice = isinstance(study, ChoiceStudy)
        n = study.options if choice else 2
        width = image_width or (224 if choice else 384)
        self.participant = w.Text(description="Participant", placeholder="your participant id")
        self.start = w.Button(description="Start", button_style="primary")
        self.images = [w.Image(width=width) for _ in range(n)]
        labels = ([f"choose image {i + 1}" for i in range(n)] if choice else
                  ["left is more realistic", "right is more realistic"])
        self.buttons = [w.Button(description=label, disabled=True,
                                 layout=w.Layout(width=f"{width}px")) for label in labels]
        for i, button in enumerate(self.buttons):
            button.on_click(lambda _, i=i: self.on_choice(i))
        if not choice:
            self.left_button, self.right_button = self.buttons
            self.left_image, self.right_image = self.images
        self.progress = w.Label("")
        self.message = w.HTML("Enter your participant id and press Start.")
        self.start.on_click(self.on_start)
        cells = [w.VBox([image, button]) for image, button in zip(self.images, self.buttons)]
        grid = (w.GridBox(cells, layout=w.Layout(
            grid_template_columns=f"repeat({min(n, 4)}, {width + 8}px)")) if choice
            else w.HBox(cells))
        self.widget = w.VBox([w.HBox([self.participant, self.start, self.progress]),
                              self.message, grid])

    def on_start(self, _=None) -> None:
        try:
            self.session = session_for(self.study, self.responses, self.participant.value,
                                       **self.options)
        except StudyError as err:
            self.message.value = html.escape(str(err))
            return
        self.participant.disabled = self.start.disabled = True
        self._show()

    def on_choice(self, position: int) -> None:
        if self.session is None:
            return
        try:
            self.session.answer_position(position)
        except (StudyError, OSError) as err:
            self.message.value = html.escape(f"not recorded: {err}")
            return
        self._show()

    def _show(self) -> None:
        done, total = self.session.progress
        self.progress.value = f"{done} / {total} answered"
        finished = self.session.finished
        for button in self.buttons:
            button.disabled = finished
        if finished:
            for image in self.images:
                image.value = b""
            self.message.value = (f"<b>Finished — thank you!</b> All {total} answers are "
                                  "recorded; you can close this page.")
            return
        for image, path in zip(self.images, map(Path, self.session.current_images())):
            image.format = image_format(path)
            image.value = path.read_bytes()
        self.message.value = QUESTION[self.study.kind].format(n=len(self.images))
