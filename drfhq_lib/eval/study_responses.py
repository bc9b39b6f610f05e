"""The responses files of the user studies: append, read, one participant's session, simulation.

* One CSV per study (columns: ``study.COLUMNS_OF``; Fig. 6 records the order in which the
  images were shown and the one chosen, Fig. 15 the side ours was on and the side chosen).
  Each response is one complete line written by one ``os.write`` on an ``O_APPEND`` descriptor
  under an exclusive ``flock``, then ``fsync`` before the call returns: a crash loses at most
  the lines being written, and writers in several threads or processes never interleave. Readers keep the first answer of a
  (participant, trial) and ignore later ones.
* :class:`Session` (Fig. 15 pairs) and :class:`ChoiceSession` (Fig. 6 sets) are the state of one
  participant (order, placement, what is answered); every answer is on disk before ``answer``
  returns. ``drfhq_lib.apps.study`` (widgets) and ``drfhq_lib.apps.study_server`` (web page)
  only draw them.
* Simulated responses (CI, demos, load tests) carry ``simulated=true`` and go only into a file
  marked by a ``<csv>.simulated`` file; real ones never go there, simulated ones never go into
  an unmarked file, and tallies and figures of such data say so.
"""

from __future__ import annotations

import csv
import fcntl
import io
import os
import random
import time
from pathlib import Path
from typing import Callable, Iterable, Mapping

from drfhq_lib.eval.study import (COLUMNS_OF, KEY_OF, SIDES, ChoiceSet, ChoiceStudy, Responses,
                                  Study, StudyError, _flag, check_participant, choice_order,
                                  choice_row, pick_ours_with, presentation_order, response_row,
                                  simulated_picks)
from drfhq_lib.files import write_text_atomic

SIMULATED_SUFFIX = ".simulated"


def _csv_text(rows: Iterable[Mapping], columns, header: bool) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    if header:
        writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def simulated_marker(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(path.name + SIMULATED_SUFFIX)


def mark_simulated(path: str | os.PathLike, note: str) -> Path:
    """Mark ``path`` as a file of simulated responses (before any is written to it)."""
    path = Path(path)
    if path.exists() and path.stat().st_size and not simulated_marker(path).exists():
        raise StudyError(f"{path}: exists and is not marked simulated; simulated responses "
                         "never go into a file of real ones, choose another file")
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text_atomic(simulated_marker(path),
                             f"{path.name}: SIMULATED responses ({note}); not study results\n")


def _complete_size(fd: int, size: int) -> int:
    """Bytes up to the last newline: a line torn by a crash ends without one."""
    if not size or os.pread(fd, 1, size - 1) == b"\n":
        return size
    return os.pread(fd, size, 0).rfind(b"\n") + 1


def append_response(path: str | os.PathLike, row: Mapping) -> None:
    """Append one response as one complete CSV line (header first when the file is new)."""
    path = Path(path)
    kind = row.get("study")
    if kind not in COLUMNS_OF:
        raise ValueError(f"row of unknown study {kind!r}")
    marked = simulated_marker(path).exists()
    if marked and row.get("simulated") != "true":
        raise StudyError(f"{path}: this is a file of simulated responses; give the app a new "
                         "responses file for real participants")
    if not marked and row.get("simulated") == "true":
        raise StudyError(f"{path}: simulated responses go only into a file marked simulated "
                         f"({simulated_marker(path).name}); see mark_simulated")
    path.parent.mkdir(parents=True, exist_ok=True)
    header = _csv_text([], COLUMNS_OF[kind], header=True).encode()
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # writers of other processes wait; released by close
        size = os.fstat(fd).st_size
        complete = _complete_size(fd, size)
        if complete and os.pread(fd, len(header), 0) != header:
            raise StudyError(f"{path}: not a responses file of the {kind!r} study (its header "
                             "differs); give the app a new file name")
        if complete < size:  # drop the torn fragment (never a response) so it cannot merge
            os.ftruncate(fd, complete)
        data = (b"" if complete else header) + _csv_text([row], COLUMNS_OF[kind],
                                                         header=False).encode()
        if os.write(fd, data) != len(data):
            raise StudyError(f"{path}: short write (disk full?); the last line may be partial")
        # The line is whole in the file: let the next writer append while this one waits for
        # the disk (concurrent fsyncs of one file share the journal commit).
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.fsync(fd)
    finally:
        os.close(fd)


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _row_problems(row: dict, kind: str) -> list[str]:
    problems = [f"{c}={row.get(c)!r}" for c in ("chose_ours", "simulated")
                if row.get(c) not in ("true", "false")]
    if row.get("study") != kind or not row.get("participant"):
        problems.append(f"participant={row.get('participant')!r} study={row.get('study')!r}")
    if kind == "fullbody":
        problems += [f"{c}={row.get(c)!r}" for c in ("ours_side", "choice")
                     if row.get(c) not in SIDES]
        if not problems and row["chose_ours"] != _flag(row["choice"] == row["ours_side"]):
            problems.append("chose_ours disagrees with choice and ours_side")
        return problems
    shown = (row.get("shown") or "").split("|")
    ours, chosen = _int(row.get("ours_position")), _int(row.get("chosen_position"))
    if len(set(shown)) != len(shown) or "" in shown:
        problems.append(f"shown={row.get('shown')!r}")
    elif ours is None or chosen is None or not (1 <= ours <= len(shown) and
                                                1 <= chosen <= len(shown)):
        problems.append(f"ours_position={row.get('ours_position')!r} "
                        f"chosen_position={row.get('chosen_position')!r}")
    elif row["choice"] != shown[chosen - 1]:
        problems.append("choice is not the image shown at chosen_position")
    elif not problems and row["chose_ours"] != _flag(chosen == ours):
        problems.append("chose_ours disagrees with chosen_position and ours_position")
    return problems


def _kind_of_header(fieldnames, path: Path) -> str:
    for kind, columns in COLUMNS_OF.items():
        if tuple(fieldnames) == columns:
            return kind
    raise StudyError(f"{path}: columns {fieldnames} are not those of a responses file of "
                     f"drfhq_lib.eval.study_responses ({', '.join(COLUMNS_OF)})")


def read_responses(path: str | os.PathLike) -> Responses:
    """Validated responses of ``path``; whether they are simulated (all rows or none)."""
    path = Path(path)
    if not path.is_file():
        raise StudyError(
            f"{path}: no responses file. Collect responses with `drfhq study serve "
            f"{path.parent}` (participants open the page on their own devices) or with the app "
            "of notebook 15 (cell 'Collect responses'), or run the notebook with simulate=True "
            "for a demonstration on simulated data")
    text = path.read_text(encoding="utf-8")
    partial = 0
    if text and not text.endswith("\n"):
        text, partial = text[: text.rfind("\n") + 1], 1
    reader = csv.DictReader(io.StringIO(text))
    kind = None if reader.fieldnames is None else _kind_of_header(reader.fieldnames, path)
    rows, seen, duplicates = [], set(), 0
    for line, row in enumerate(reader, start=2):
        problems = _row_problems(row, kind)
        if problems:
            raise StudyError(f"{path}, line {line}: bad response ({'; '.join(problems)}); fix "
                             "or delete that line")
        key = (row["participant"], row["study"], row[KEY_OF[kind]])
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
    return Responses(path, rows, marked or flags == {"true"}, duplicates, partial, kind)


def answered_trials(path: str | os.PathLike, participant: str, kind: str) -> set[str]:
    """The trials (Fig. 15) or sets (Fig. 6) ``participant`` has answered in ``path``."""
    if not Path(path).exists():
        return set()
    return {r[KEY_OF[kind]] for r in read_responses(path).rows
            if r["participant"] == participant and r["study"] == kind}


class _Pass:
    """One participant's pass through a study; every answer is on disk before it returns.

    Subclasses give the order (:meth:`_order`), each item's key, its images in the order shown
    and the row of an answer. ``answer_position(position, key)`` answers the current item with
    the image at ``position``; with ``key`` (the web page sends the trial it showed) a stale or
    repeated answer is ignored exactly; without it (widget clicks) a click sooner than
    ``min_view_s`` after the item was shown is taken as a double click's second and ignored.
    ``recheck``: read the file before each answer, in case another tab of the same participant
    answered meanwhile (the web server, the only writer of its files, turns it off)."""

    kind = ""

    def __init__(self, study, responses: str | os.PathLike, participant: str, *,
                 min_view_s: float = 0.4, clock: Callable[[], float] = time.monotonic,
                 simulated: bool = False, recheck: bool = True):
        self.participant = check_participant(participant)
        self.study, self.path, self.simulated = study, Path(responses), simulated
        if self.path.exists() and read_responses(self.path).simulated != simulated:
            raise StudyError(f"{self.path}: this is a file of "
                             f"{'real' if simulated else 'simulated'} responses; give the app "
                             f"a new responses file for {'simulated' if simulated else 'real'} "
                             "participants")
        missing = [p for p in study.images() if not Path(p).is_file()]
        if missing:
            raise StudyError(f"{len(missing)} image(s) of the study are missing "
                             f"({', '.join(missing[:4])}); rebuild the study JSON")
        self.order = self._order()
        done = answered_trials(self.path, self.participant, self.kind)
        self.remaining = [item for item in self.order if self.key(item) not in done]
        self.min_view_s, self._clock, self.recheck = min_view_s, clock, recheck
        self._shown_at = clock()

    def _order(self) -> list:
        raise NotImplementedError

    def key(self, item) -> str:
        raise NotImplementedError

    def images(self, item) -> list[str]:
        raise NotImplementedError

    def _row(self, item, position: int) -> dict:
        raise NotImplementedError

    @property
    def current(self):
        return self.remaining[0] if self.remaining else None

    @property
    def current_key(self) -> str | None:
        return None if self.finished else self.key(self.current)

    def current_images(self) -> list[str]:
        """The image files of the current item, in the order shown (left to right)."""
        return [] if self.finished else self.images(self.current)

    @property
    def finished(self) -> bool:
        return not self.remaining

    @property
    def progress(self) -> tuple[int, int]:
        return len(self.order) - len(self.remaining), len(self.order)

    def answer_position(self, position: int, key: str | None = None) -> dict | None:
        """Record the image at ``position`` (0-based, as shown) for the current item; None
        when ignored (finished, stale ``key``, too soon after showing it)."""
        if self.finished:
            return None
        if not 0 <= position < len(self.images(self.current)):
            raise ValueError(f"position must be 0..{len(self.images(self.current)) - 1}, "
                             f"got {position!r}")
        if key is not None and key != self.current_key:
            return None
        if key is None and self._clock() - self._shown_at < self.min_view_s:
            return None
        item = self.remaining.pop(0)
        row = None
        # Another tab of the same participant may have answered it meanwhile: keep theirs.
        if not self.recheck or self.key(item) not in answered_trials(
                self.path, self.participant, self.kind):
            row = self._row(item, position)
            try:
                append_response(self.path, row)
            except BaseException:
                self.remaining.insert(0, item)
                raise
        self._shown_at = self._clock()
        return row


class Session(_Pass):
    """Fig. 15: pairs, ours on a balanced, seeded side; ``answer('left' | 'right')``."""

    kind = "fullbody"

    def __init__(self, study: Study, responses: str | os.PathLike, participant: str, **kw):
        if not isinstance(study, Study):
            raise StudyError("Session is for Fig. 15's pairs; Fig. 6 is a ChoiceSession")
        super().__init__(study, responses, participant, **kw)

    def _order(self):
        return presentation_order(self.study, self.participant)

    def key(self, item) -> str:
        return item[0].trial

    def images(self, item) -> list[str]:
        trial, ours_side = item
        pair = [trial.path_ours, trial.path_other]
        return pair if ours_side == "left" else pair[::-1]

    def _row(self, item, position: int) -> dict:
        trial, ours_side = item
        return response_row(self.participant, self.kind, trial, ours_side, SIDES[position],
                            simulated=self.simulated)

    def answer(self, choice: str) -> dict | None:
        """Record ``choice`` ('left'/'right') for the current trial; None when ignored."""
        if choice not in SIDES:
            raise ValueError(f"choice must be one of {SIDES}, got {choice!r}")
        return self.answer_position(SIDES.index(choice))


class ChoiceSession(_Pass):
    """Fig. 6: sets of all methods' images in a seeded order; ``answer(position)``."""

    kind = "inversion"

    def __init__(self, study: ChoiceStudy, responses: str | os.PathLike, participant: str,
                 **kw):
        if not isinstance(study, ChoiceStudy):
            raise StudyError("ChoiceSession is for Fig. 6's sets; Fig. 15 is a Session")
        super().__init__(study, responses, participant, **kw)

    def _order(self):
        return choice_order(self.study, self.participant)

    def key(self, item: ChoiceSet) -> str:
        return item.set

    def images(self, item: ChoiceSet) -> list[str]:
        return [p for _, p in item.paths]

    def _row(self, item: ChoiceSet, position: int) -> dict:
        return choice_row(self.participant, item, position, self.study.ours,
                          simulated=self.simulated)

    def answer(self, position: int) -> dict | None:
        return self.answer_position(position)


def session_for(study, responses: str | os.PathLike, participant: str, **kw) -> _Pass:
    """The session class of ``study``'s kind."""
    cls = ChoiceSession if isinstance(study, ChoiceStudy) else Session
    return cls(study, responses, participant, **kw)


def simulate_responses(study, path: str | os.PathLike, n_participants: int, p_ours: float,
                       seed: int = 0) -> Responses:
    """Write SIMULATED responses (CI and demos only): Fig. 15 picks ours in a pair with
    ``p_ours``; Fig. 6 picks ours in a set with ``p_ours``, else one other image uniformly."""
    path = Path(path)
    if path.exists() and not simulated_marker(path).exists():
        raise StudyError(f"{path}: exists and is not marked simulated; simulated responses "
                         "never overwrite real ones, choose another file")
    rng = random.Random(seed)
    rows, columns = [], COLUMNS_OF[study.kind]
    if isinstance(study, ChoiceStudy):
        for participant, shown, method in simulated_picks(study, n_participants,
                                                          pick_ours_with(p_ours), seed):
            rows.append(choice_row(participant, shown, shown.methods.index(method), study.ours,
                                   simulated=True))
    else:
        for i in range(n_participants):
            participant = f"simulated-{i + 1:02d}"
            for trial, side in presentation_order(study, participant):
                chose_ours = rng.random() < p_ours
                choice = side if chose_ours else SIDES[1 - SIDES.index(side)]
                rows.append(response_row(participant, study.kind, trial, side, choice,
                                         simulated=True))
    # Marker first: a crash in between leaves a marked file, never unmarked simulated rows.
    mark_simulated(path, f"p_ours={p_ours}, seed={seed}, for CI and demonstrations")
    write_text_atomic(path, _csv_text(rows, columns, header=True))
    return read_responses(path)


def responses_path(work_dir: str | os.PathLike, kind: str, simulated: bool = False) -> Path:
    """``work_dir/responses_<kind>.csv`` (real) or ``work_dir/simulated/responses_<kind>.csv``."""
    return Path(work_dir) / ("simulated" if simulated else "") / f"responses_{kind}.csv"


def notebook_responses(studies: Mapping, paths: Mapping[str, str], simulate: bool,
                       work_dir: str | os.PathLike, participants: Mapping[str, int],
                       p_ours: float, seed: int) -> dict[str, Responses]:
    """Real responses from ``paths``, or (``simulate``) freshly simulated ones kept under
    ``work_dir/simulated`` so that they never land where the app writes."""
    if not simulate:
        return {kind: read_responses(paths[kind]) for kind in studies}
    return {kind: simulate_responses(study, responses_path(work_dir, kind, simulated=True),
                                     participants[kind], p_ours, seed + i)
            for i, (kind, study) in enumerate(studies.items())}
