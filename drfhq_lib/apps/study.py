"""The user studies of Sec. 5.2.1 (Fig. 6) and Sec. 7 (Fig. 15): trials, a 2AFC app, tallies.

* A :class:`Study` is a list of two-alternative forced-choice trials, each "our result against
  one other image of the same input", built from image files and frozen as a small JSON:

  - ``inversion`` (Fig. 6): ``RESULTS/<method>/<name>.png`` (one folder per method, as the Fig. 7
    notebook writes them; ours in ``RESULTS/ours``). A *set* is one input ``name``; it holds one
    trial per other method (the paper: 10 sets, six inversion methods).
  - ``fullbody`` (Fig. 15): the original render ``IN/name.ext`` against our composite
    ``OUT/name.png`` (as ``drfhq enhance`` writes it). Each pair is its own set (the paper: 20).

* :class:`Session` is the state of one participant (order, placement, what is answered);
  :class:`StudyApp` only draws it with ipywidgets, so the logic is testable without a browser.
  Trial order (sets shuffled, trials shuffled within a set) and the left/right placement of ours
  (balanced: half left, half right) are seeded from the participant id, so a participant who
  reopens the page gets the same sequence and continues where they stopped.
* Responses are appended to a CSV, one complete line per ``os.write`` on an ``O_APPEND``
  descriptor followed by ``fsync``: a crash loses at most the line being written, never a
  previous one. Readers keep the first answer of a (participant, trial) and ignore later ones.
* :func:`tally` counts, per participant, the sets (or pairs) in which ours was chosen and tests
  the pooled trial-level proportion against 0.5. How a set of several 2AFC trials counts as
  "ours chosen" is ``set_rule`` (see :data:`SET_RULES`).
* :func:`simulate_responses` exists only for CI and demonstrations: every row carries
  ``simulated=true``, the file gets a ``<csv>.simulated`` marker, and tallies and figures of such
  data say so (``simulated: true``; :data:`SIMULATED_WARNING` across the figure).
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as _dt
import fnmatch
import hashlib
import html
import io
import os
import random
import time
from collections import Counter
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

from drfhq_lib.errors import DrfhqError
from drfhq_lib.files import write_json_atomic, write_text_atomic
from drfhq_lib.data.images import list_images

KINDS = ("inversion", "fullbody")
FIGURE_OF = {"inversion": "Fig. 6", "fullbody": "Fig. 15"}
TITLE_OF = {"inversion": "ours vs StyleGAN inversion methods",
            "fullbody": "full-body renders: our composite vs original"}
UNIT_OF = {"inversion": "sets", "fullbody": "pairs"}
#: The six inversion methods of Sec. 5.2.1 (names used for placeholder studies only).
PAPER_METHODS = ("e4e", "pSp", "HyperStyle", "ReStyle-e4e", "ReStyle-pSp", "optimization")
PAPER_SETS = {"inversion": 10, "fullbody": 20}
PAPER_PARTICIPANTS = {"inversion": 20, "fullbody": 24}

#: How a set of 2AFC trials (ours vs each other method) counts as "ours chosen" for Fig. 6.
#: The paper showed a whole set and counted the sets where ours was picked; with pairwise
#: trials the closest reading is "all": ours preferred to every other method of the set (what
#: choosing ours from the whole set implies). "majority": ours preferred in more than half of
#: the set's trials (ties do not count). "trial": no sets, count every trial won (y out of the
#: number of trials). A full-body set is a single pair, so the three rules agree there.
SET_RULES = {
    "all": "ours preferred over every other method of the set",
    "majority": "ours preferred in more than half of the set's trials",
    "trial": "each trial counted on its own (y = trials won)",
}
COLUMNS = ("participant", "study", "trial", "set", "method", "ours_side", "choice",
           "chose_ours", "timestamp", "simulated")
SIDES = ("left", "right")
SIMULATED_WARNING = "SIMULATED responses — not study results"
SIMULATED_SUFFIX = ".simulated"
INDEPENDENCE_NOTE = ("pooled test treats every trial as independent; trials of one participant "
                     "are not, so the sign test over participants is the conservative check")


class StudyError(DrfhqError):
    """A study, its image files or a responses file is missing or malformed."""


@dataclasses.dataclass(frozen=True)
class Trial:
    """One 2AFC comparison: ours against ``method`` on input ``set``."""

    trial: str  # "<set>/<method>": stable when a study is rebuilt, so resumes survive it
    set: str
    method: str
    path_ours: str
    path_other: str


@dataclasses.dataclass(frozen=True)
class Study:
    kind: str
    trials: tuple[Trial, ...]
    ours: str = "ours"
    placeholder: bool = False  # True: generated stand-in images, for CI and demos only

    def sets(self) -> list[str]:
        return sorted({t.set for t in self.trials})

    def as_dict(self) -> dict:
        return {"kind": self.kind, "ours": self.ours, "placeholder": self.placeholder,
                "trials": [dataclasses.asdict(t) for t in self.trials]}


# --------------------------------------------------------------------------- building studies

def _images_by_stem(folder: Path, pattern: str = "*") -> dict[str, Path]:
    if not folder.is_dir():
        return {}
    return {p.stem: p for p in list_images(folder) if fnmatch.fnmatch(p.name, pattern)}


def _checked_study(kind: str, trials: list[Trial], missing: list[str], strict: bool,
                   where: str, remedy: str, ours: str = "ours") -> Study:
    if missing and strict:
        shown = ", ".join(missing[:8]) + (" ..." if len(missing) > 8 else "")
        raise StudyError(f"{where}: {len(missing)} comparison image(s) missing ({shown}); "
                         f"{remedy}, or pass strict=False to leave those trials out")
    if not trials:
        raise StudyError(f"{where}: no trials could be built; {remedy}")
    return Study(kind, tuple(trials), ours)


def inversion_study(results: str | os.PathLike, ours: str = "ours",
                    methods: Sequence[str] | None = None, strict: bool = True) -> Study:
    """Fig. 6 trials from ``results/<method>/<name>.<ext>``: ours vs each method, per name."""
    root = Path(results)
    ours_files = _images_by_stem(root / ours)
    remedy = (f"run the Fig. 7 notebook so that {root} holds one folder per method "
              f"({ours}/, e4e/, ...) with one image per input name")
    if not ours_files:
        raise StudyError(f"{root / ours}: no images of our results; {remedy}")
    if methods is None:
        methods = sorted(d.name for d in root.iterdir()
                         if d.is_dir() and d.name != ours and not d.name.startswith("."))
    others = {m: _images_by_stem(root / m) for m in methods}
    trials, missing = [], []
    for name in sorted(ours_files):
        for method, files in others.items():
            if name in files:
                trials.append(Trial(f"{name}/{method}", name, method, str(ours_files[name]),
                                    str(files[name])))
            else:
                missing.append(f"{method}/{name}")
    return _checked_study("inversion", trials, missing, strict, str(root), remedy, ours)


def fullbody_study(originals: str | os.PathLike, composites: str | os.PathLike,
                   pattern: str = "*", strict: bool = True) -> Study:
    """Fig. 15 trials: each original render ``originals/name.ext`` (names matching
    ``pattern``) against our composite ``composites/name.<ext>``."""
    originals, composites = Path(originals), Path(composites)
    inputs = _images_by_stem(originals, pattern)
    if not inputs:
        raise StudyError(f"{originals}: no rendered images matching {pattern!r}; pass the "
                         "folder of full-body renders given to `drfhq enhance`")
    ours_files = _images_by_stem(composites)
    trials = [Trial(f"{name}/original", name, "original", str(ours_files[name]), str(path))
              for name, path in sorted(inputs.items()) if name in ours_files]
    missing = [f"{composites / name}.png" for name in sorted(inputs) if name not in ours_files]
    return _checked_study("fullbody", trials, missing, strict, str(composites),
                          f"run `drfhq enhance {originals} --out {composites}`")


def save_study(study: Study, path: str | os.PathLike) -> Path:
    return write_json_atomic(path, study.as_dict())


def load_study(path: str | os.PathLike) -> Study:
    import json

    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        trials = tuple(Trial(**t) for t in record["trials"])
        study = Study(record["kind"], trials, record.get("ours", "ours"),
                      bool(record.get("placeholder", False)))
    except FileNotFoundError:
        raise StudyError(f"{path}: no such study file; build one with inversion_study or "
                         "fullbody_study and save_study") from None
    except (ValueError, KeyError, TypeError) as err:
        raise StudyError(f"{path}: not a study JSON ({err!r}); rebuild it with save_study") \
            from None
    if study.kind not in KINDS or not trials:
        raise StudyError(f"{path}: study kind must be one of {KINDS} with at least one trial")
    return study


def placeholder_study(kind: str, folder: str | os.PathLike, n_sets: int | None = None,
                      methods: Sequence[str] = PAPER_METHODS, size: int = 48) -> Study:
    """A study of labelled grey stand-in images, for CI and demos of the app (never results)."""
    from PIL import Image, ImageDraw

    folder = Path(folder)
    n_sets = n_sets or PAPER_SETS[kind]
    others = methods if kind == "inversion" else ("original",)
    trials = []
    for i in range(n_sets):
        name = f"placeholder{i + 1:02d}"
        paths = {}
        for method in ("ours", *others):
            path = folder / kind / method / f"{name}.png"
            if not path.exists():
                image = Image.new("RGB", (size, size), (128, 128, 128))
                ImageDraw.Draw(image).text((2, 2), f"stand-in\n{method}\n{i + 1}", fill=(0, 0, 0))
                path.parent.mkdir(parents=True, exist_ok=True)
                image.save(path)
            paths[method] = str(path)
        trials += [Trial(f"{name}/{m}", name, m, paths["ours"], paths[m]) for m in others]
    return Study(kind, tuple(trials), placeholder=True)


def load_or_build_study(path: str | os.PathLike, build: Callable[[], Study]) -> Study:
    """The study frozen at ``path`` (what participants saw); built and saved on first use."""
    path = Path(path)
    if path.exists():
        return load_study(path)
    study = build()
    save_study(study, path)
    return study


# ------------------------------------------------------------------- order and responses

def _participant_rng(kind: str, participant: str) -> random.Random:
    # sha256, not hash(): Python salts str hashes per process, and the order must survive one.
    digest = hashlib.sha256(f"{kind}\x00{participant}".encode("utf-8")).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def presentation_order(study: Study, participant: str, group_by_set: bool = True
                       ) -> list[tuple[Trial, str]]:
    """``(trial, side of ours)`` in the order shown to ``participant``, the same every time.

    Sets come in random order, each set's trials together in random order (the paper presents
    the sets one after the other); ours is on the left in half of the trials."""
    rng = _participant_rng(study.kind, participant)
    by_set: dict[str, list[Trial]] = {}
    for trial in sorted(study.trials, key=lambda t: t.trial):
        by_set.setdefault(trial.set, []).append(trial)
    sets = sorted(by_set)
    rng.shuffle(sets)
    if group_by_set:
        order = []
        for name in sets:
            rng.shuffle(by_set[name])
            order += by_set[name]
    else:
        order = [t for name in sets for t in by_set[name]]
        rng.shuffle(order)
    sides = [SIDES[i % 2] for i in range(len(order))]
    rng.shuffle(sides)
    return list(zip(order, sides))


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


def response_row(participant: str, kind: str, trial: Trial, ours_side: str, choice: str,
                 simulated: bool = False, timestamp: str | None = None) -> dict:
    if ours_side not in SIDES or choice not in SIDES:
        raise ValueError(f"sides are {SIDES}, got ours_side={ours_side!r} choice={choice!r}")
    return {"participant": participant, "study": kind, "trial": trial.trial, "set": trial.set,
            "method": trial.method, "ours_side": ours_side, "choice": choice,
            "chose_ours": _flag(choice == ours_side), "timestamp": timestamp or _now(),
            "simulated": _flag(simulated)}


def _flag(value: bool) -> str:
    return "true" if value else "false"


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


@dataclasses.dataclass
class Responses:
    path: Path
    rows: list[dict]  # validated, first answer of each (participant, study, trial) only
    simulated: bool
    duplicates: int = 0  # later answers of an already answered trial, ignored
    partial_lines: int = 0  # a last line without newline (a write cut by a crash), ignored


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
                         "not a responses file of drfhq_lib.apps.study")
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


# ------------------------------------------------------------------------------- sessions

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


# ------------------------------------------------------------------------------ simulation

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


# -------------------------------------------------------------------------------- tallies

def _exact(k: int, n: int) -> dict:
    """Proportion, two-sided exact binomial p against 0.5, and its Clopper-Pearson 95% CI."""
    from scipy.stats import binomtest

    result = binomtest(k, n, 0.5, alternative="two-sided")
    ci = result.proportion_ci(confidence_level=0.95, method="exact")
    return {"k": k, "n": n, "proportion": k / n, "p_value": float(result.pvalue),
            "ci95": [float(ci.low), float(ci.high)]}


def set_chosen(wins: int, trials: int, rule: str) -> bool:
    """Whether a set with ``wins`` of ``trials`` trials won by ours counts as ours chosen."""
    if rule == "all":
        return wins == trials
    if rule == "majority":
        return 2 * wins > trials
    raise ValueError(f"set_rule for sets is 'all' or 'majority', got {rule!r}")


def _set_chance(trials: int, rule: str) -> float:
    """P(set counts as ours chosen) for a participant without preference (each trial 1/2)."""
    from math import comb

    return sum(comb(trials, w) for w in range(trials + 1) if set_chosen(w, trials, rule)) \
        / 2 ** trials


def _participant_tally(rows: list[dict], rule: str) -> dict:
    by_set: dict[str, list[bool]] = {}
    for row in rows:
        by_set.setdefault(row["set"], []).append(row["chose_ours"] == "true")
    wins = sum(sum(v) for v in by_set.values())
    if rule == "trial":
        count, out_of, chance = wins, len(rows), len(rows) / 2
    else:
        count = sum(set_chosen(sum(v), len(v), rule) for v in by_set.values())
        out_of = len(by_set)
        chance = sum(_set_chance(len(v), rule) for v in by_set.values())
    trials = _exact(wins, len(rows))
    return {"participant": rows[0]["participant"], "ours_chosen": count, "out_of": out_of,
            "expected_without_preference": chance, "trials_ours": wins, "trials": len(rows),
            "proportion": trials["proportion"], "ci95": trials["ci95"],
            "p_value": trials["p_value"]}


def tally(responses: Responses, kind: str, set_rule: str = "all",
          study: Study | None = None) -> dict:
    """Counts per participant, the Fig. 6/15 histogram, pooled and per-participant tests."""
    if set_rule not in SET_RULES:
        raise ValueError(f"set_rule must be one of {list(SET_RULES)}, got {set_rule!r}")
    rows = [r for r in responses.rows if r["study"] == kind]
    if not rows:
        raise StudyError(f"{responses.path}: no responses of the {kind!r} study")
    by_participant: dict[str, list[dict]] = {}
    for row in rows:
        by_participant.setdefault(row["participant"], []).append(row)
    participants = [_participant_tally(r, set_rule) for _, r in sorted(by_participant.items())]
    above = sum(p["proportion"] > 0.5 for p in participants)
    below = sum(p["proportion"] < 0.5 for p in participants)
    sign = _exact(above, above + below) if above + below else None
    pooled = _exact(sum(p["trials_ours"] for p in participants), len(rows))
    expected = len(study.trials) if study else None
    return {
        "study": kind, "figure": FIGURE_OF[kind], "simulated": responses.simulated,
        "responses_file": str(responses.path), "set_rule": set_rule,
        "set_rule_meaning": SET_RULES[set_rule] if kind == "inversion" else "one pair per set",
        "unit": "trials" if set_rule == "trial" else UNIT_OF[kind],
        "n_participants": len(participants), "n_trials": len(rows),
        "n_sets": len({r["set"] for r in rows}), "duplicates_ignored": responses.duplicates,
        "partial_lines_ignored": responses.partial_lines,
        "incomplete_participants": sorted(p["participant"] for p in participants
                                          if expected and p["trials"] < expected),
        "histogram": dict(sorted(Counter(p["ours_chosen"] for p in participants).items())),
        "participants": participants,
        "pooled": {**pooled, "test": "two-sided exact binomial, trials pooled, H0: p = 0.5",
                   "note": INDEPENDENCE_NOTE},
        "sign_test": None if sign is None else {
            **sign, "participants_above_half": above, "participants_below_half": below,
            "ties": len(participants) - above - below,
            "test": "two-sided sign test of participant proportions vs 0.5 (ties dropped)"},
    }


def tally_figure(tallies: Sequence[dict], note: str = ""):
    """One horizontal histogram per study in the paper's layout (y: ours chosen, x: number
    of participants), with the pooled test in the panel; simulated data stamped as such."""
    from matplotlib.ticker import MaxNLocator

    from drfhq_lib.eval.figures import _pyplot, decorate

    plt = _pyplot()
    fig, axes = plt.subplots(1, len(tallies), squeeze=False,
                             figsize=(4.4 * len(tallies), 4.2))
    for ax, t in zip(axes[0], tallies):
        out_of = max(p["out_of"] for p in t["participants"])
        counts = list(range(out_of + 1))
        ax.barh(counts, [t["histogram"].get(c, 0) for c in counts], color="#4878a8")
        ax.set_yticks(counts)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(f"ours chosen (out of {out_of} {t['unit']})", fontsize=8)
        ax.set_xlabel(f"number of participants (n = {t['n_participants']})", fontsize=8)
        ax.set_title(f"{t['figure']}: {TITLE_OF[t['study']]}", fontsize=9)
        pooled, sign = t["pooled"], t["sign_test"]
        text = (f"ours in {pooled['k']}/{pooled['n']} trials = {pooled['proportion']:.0%}\n"
                f"95% CI {pooled['ci95'][0]:.0%}–{pooled['ci95'][1]:.0%}, "
                f"binomial p = {pooled['p_value']:.2g}")
        if sign:
            text += f"\nsign test over participants p = {sign['p_value']:.2g}"
        ax.text(0.98, 0.02, text, transform=ax.transAxes, ha="right", va="bottom", fontsize=7,
                bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none"})
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    simulated = any(t["simulated"] for t in tallies)
    decorate(fig, warning=SIMULATED_WARNING if simulated else "", note=note)
    return fig


# ------------------------------------------------------------------- notebook 06 helpers

def notebook_studies(work_dir: str | os.PathLike, inversion_results: str, ours: str,
                     fullbody_inputs: str, fullbody_results: str, fullbody_pattern: str,
                     placeholders: bool) -> dict[str, Study]:
    """Both studies, frozen in ``work_dir/study_<kind>.json`` on first use (what participants
    see). With ``placeholders`` (simulation only), a study whose images are not there yet is
    replaced by stand-ins kept under ``work_dir/simulated`` (apart from real studies)."""
    work_dir = Path(work_dir)
    builders = {
        "inversion": lambda: inversion_study(inversion_results, ours),
        "fullbody": lambda: fullbody_study(fullbody_inputs, fullbody_results, fullbody_pattern),
    }
    studies = {}
    for kind, build in builders.items():
        try:
            studies[kind] = load_or_build_study(work_dir / f"study_{kind}.json", build)
        except StudyError as err:
            if not placeholders:
                raise
            print(f"{kind}: {err}\n  -> stand-in images (simulation only)")
            studies[kind] = load_or_build_study(
                work_dir / "simulated" / f"study_{kind}.json",
                lambda kind=kind: placeholder_study(kind, work_dir / "simulated" / "images"))
    return studies


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
