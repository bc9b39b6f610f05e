"""The responses file of the user studies: append, read, one participant's session, simulation.

* Responses are appended to a CSV, one complete line per ``os.write`` on an ``O_APPEND``
  descriptor followed by ``fsync``: a crash loses at most the line being written, never a
  previous one. Readers keep the first answer of a (participant, trial) and ignore later ones.
* :class:`Session` is the state of one participant (order, placement, what is answered); every
  answer is on disk before ``answer`` returns. ``drfhq_lib.apps.study.StudyApp`` only draws it.
* :func:`simulate_responses` exists only for CI and demonstrations: every row carries
  ``simulated=true``, the file gets a ``<csv>.simulated`` marker, and tallies and figures of such
  data say so.
"""

from __future__ import annotations

import csv
import io
import os
import random
import time
from pathlib import Path
from typing import Callable, Iterable, Mapping

from drfhq_lib.eval.study import (COLUMNS, KINDS, SIDES, Responses, Study, StudyError, Trial,
                                  _flag, presentation_order, response_row)
from drfhq_lib.files import write_text_atomic

SIMULATED_SUFFIX = ".simulated"


def _csv_text(rows: Iterable[Mapping], header: bool) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    if header:
        writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def simulated_marker(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(path.name + SIMULATED_SUFFIX)


def _complete_size(fd: int, size: int) -> int:
    """Bytes up to the last newline: a line torn by a crash ends without one."""
    if not size or os.pread(fd, 1, size - 1) == b"\n":
        return size
    return os.pread(fd, size, 0).rfind(b"\n") + 1


def append_response(path: str | os.PathLike, row: Mapping) -> None:
    """Append one response as one complete CSV line (header first when the file is new)."""
    path = Path(path)
    if simulated_marker(path).exists():
        raise StudyError(f"{path}: this is a file of simulated responses; give the app a new "
                         "responses file for real participants")
    path.parent.mkdir(parents=True, exist_ok=True)
    header = _csv_text([], header=True).encode()
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        complete = _complete_size(fd, size)
        if complete and os.pread(fd, len(header), 0) != header:
            raise StudyError(f"{path}: not a responses file of this app (its header differs); "
                             "give the app a new file name")
        if complete < size:  # drop the torn fragment (never a response) so it cannot merge
            os.ftruncate(fd, complete)
        data = (b"" if complete else header) + _csv_text([row], header=False).encode()
        if os.write(fd, data) != len(data):
            raise StudyError(f"{path}: short write (disk full?); the last line may be partial")
        os.fsync(fd)
    finally:
        os.close(fd)


def _checked_row(row: dict, path: Path, line: int) -> dict:
    problems = [f"{c}={row.get(c)!r}" for c in ("ours_side", "choice") if row.get(c) not in SIDES]
    problems += [f"{c}={row.get(c)!r}" for c in ("chose_ours", "simulated")
                 if row.get(c) not in ("true", "false")]
    if not problems and row["chose_ours"] != _flag(row["choice"] == row["ours_side"]):
        problems.append("chose_ours disagrees with choice and ours_side")
    if not problems and (not row["participant"] or row["study"] not in KINDS):
        problems.append(f"participant={row['participant']!r} study={row['study']!r}")
    if problems:
        raise StudyError(f"{path}, line {line}: bad response ({'; '.join(problems)}); fix or "
                         "delete that line")
    return row


def read_responses(path: str | os.PathLike) -> Responses:
    """Validated responses of ``path``; whether they are simulated (all rows or none)."""
    path = Path(path)
    if not path.is_file():
        raise StudyError(
            f"{path}: no responses file. Collect responses with the app (notebook "
            "15_user_study, cell 'Collect responses': each participant enters an id, presses "
            "Start and answers every pair), or run the notebook with simulate=True for a "
            "demonstration on simulated data")
    text = path.read_text(encoding="utf-8")
    partial = 0
    if text and not text.endswith("\n"):
        text, partial = text[: text.rfind("\n") + 1], 1
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is not None and tuple(reader.fieldnames) != COLUMNS:
        raise StudyError(f"{path}: columns {reader.fieldnames} are not {list(COLUMNS)}; "
                         "not a responses file of drfhq_lib.eval.study_responses")
    rows, seen, duplicates = [], set(), 0
    for line, row in enumerate(reader, start=2):
        row = _checked_row(row, path, line)
        key = (row["participant"], row["study"], row["trial"])
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        rows.append(row)
    flags = {row["simulated"] for row in rows}
    if len(flags) > 1:
        raise StudyError(f"{path}: mixes simulated and real responses; keep real responses "
                         "in a file of their own")
    marked = simulated_marker(path).exists()
    if marked and flags == {"false"}:
        raise StudyError(f"{path}: real responses in a file marked simulated by "
                         f"{simulated_marker(path).name}; move them to a file of their own")
    return Responses(path, rows, marked or flags == {"true"}, duplicates, partial)


def answered_trials(path: str | os.PathLike, participant: str, kind: str) -> set[str]:
    if not Path(path).exists():
        return set()
    return {r["trial"] for r in read_responses(path).rows
            if r["participant"] == participant and r["study"] == kind}


class Session:
    """One participant's pass through a study; every answer is on disk before it returns."""

    def __init__(self, study: Study, responses: str | os.PathLike, participant: str, *,
                 group_by_set: bool = True, min_view_s: float = 0.4,
                 clock: Callable[[], float] = time.monotonic):
        self.participant = (participant or "").strip()
        if not self.participant:
            raise StudyError("enter a participant id, then press Start")
        self.study, self.path = study, Path(responses)
        if self.path.exists() and read_responses(self.path).simulated:
            raise StudyError(f"{self.path}: this is a file of simulated responses; give the "
                             "app a new responses file for real participants")
        missing = sorted({p for t in study.trials for p in (t.path_ours, t.path_other)
                          if not Path(p).is_file()})
        if missing:
            raise StudyError(f"{len(missing)} image(s) of the study are missing "
                             f"({', '.join(missing[:4])}); rebuild the study JSON")
        self.order = presentation_order(study, self.participant, group_by_set)
        done = answered_trials(self.path, self.participant, study.kind)
        self.remaining = [(t, side) for t, side in self.order if t.trial not in done]
        # A double click's second click reaches the kernel after the next trial is shown; a
        # click within min_view_s of showing a trial is that second click, not an answer.
        self.min_view_s, self._clock = min_view_s, clock
        self._shown_at = clock()

    @property
    def current(self) -> tuple[Trial, str] | None:
        return self.remaining[0] if self.remaining else None

    @property
    def finished(self) -> bool:
        return not self.remaining

    @property
    def progress(self) -> tuple[int, int]:
        return len(self.order) - len(self.remaining), len(self.order)

    def answer(self, choice: str) -> dict | None:
        """Record ``choice`` ('left'/'right') for the current trial; None when ignored."""
        if choice not in SIDES:
            raise ValueError(f"choice must be one of {SIDES}, got {choice!r}")
        if self.finished or self._clock() - self._shown_at < self.min_view_s:
            return None
        trial, side = self.remaining.pop(0)
        row = None
        # Another tab of the same participant may have answered it meanwhile: keep theirs.
        if trial.trial not in answered_trials(self.path, self.participant, self.study.kind):
            row = response_row(self.participant, self.study.kind, trial, side, choice)
            try:
                append_response(self.path, row)
            except BaseException:
                self.remaining.insert(0, (trial, side))
                raise
        self._shown_at = self._clock()
        return row


def simulate_responses(study: Study, path: str | os.PathLike, n_participants: int,
                       p_ours: float, seed: int = 0) -> Responses:
    """Write SIMULATED responses (CI and demos only): each trial picks ours with ``p_ours``."""
    path = Path(path)
    if path.exists() and not simulated_marker(path).exists():
        raise StudyError(f"{path}: exists and is not marked simulated; simulated responses "
                         "never overwrite real ones, choose another file")
    rng = random.Random(seed)
    rows = []
    for i in range(n_participants):
        participant = f"simulated-{i + 1:02d}"
        for trial, side in presentation_order(study, participant):
            chose_ours = rng.random() < p_ours
            choice = side if chose_ours else SIDES[1 - SIDES.index(side)]
            rows.append(response_row(participant, study.kind, trial, side, choice,
                                     simulated=True))
    # Marker first: a crash in between leaves a marked file, never unmarked simulated rows.
    write_text_atomic(simulated_marker(path),
                      f"{path.name}: SIMULATED responses (p_ours={p_ours}, seed={seed}) for CI "
                      "and demonstrations; not study results\n")
    write_text_atomic(path, _csv_text(rows, header=True))
    return read_responses(path)


def notebook_responses(studies: Mapping[str, Study], paths: Mapping[str, str], simulate: bool,
                       work_dir: str | os.PathLike, participants: Mapping[str, int],
                       p_ours: float, seed: int) -> dict[str, Responses]:
    """Real responses from ``paths``, or (``simulate``) freshly simulated ones kept under
    ``work_dir/simulated`` so that they never land where the app writes."""
    if not simulate:
        return {kind: read_responses(paths[kind]) for kind in studies}
    folder = Path(work_dir) / "simulated"
    return {kind: simulate_responses(study, folder / f"responses_{kind}.csv",
                                     participants[kind], p_ours, seed + i)
            for i, (kind, study) in enumerate(studies.items())}
