"""The user studies of Sec. 5.2.1 (Fig. 6) and Sec. 7 (Fig. 15): trials, order, tallies, tests.

Compute only (no file or widget I/O). Where the rest lives:

* ``drfhq_lib.eval.study_files``: studies built from result folders, frozen as JSON;
* ``drfhq_lib.eval.study_responses``: the responses CSV (append with fsync, read), one
  participant's session, simulated responses;
* ``drfhq_lib.eval.study_figures``: the histogram figure in the paper's layout;
* ``drfhq_lib.apps.study`` (ipywidgets, inside Jupyter) and ``drfhq_lib.apps.study_server``
  (a web page for participants' own devices, ``drfhq study serve``).

The two studies differ, as in the paper:

* **Fig. 6** (``inversion``) is a :class:`ChoiceStudy`: each of the 10 *sets* shows the results
  of one input by ours and the six inversion methods, in a random order seeded per participant
  and set (:func:`choice_order`), and the participant picks the single most realistic image.
  The tally (:func:`choice_tally`) is, per participant, the number of sets where ours was
  picked; it is tested against chance 1/7 (exact binomial, Clopper-Pearson 95% CIs), with the
  share of choices of each method. The methods come from an explicit list
  (:func:`check_methods`); ``aligned/`` (the inputs Fig. 7 writes) is never one.
* **Fig. 15** (``fullbody``) is a :class:`Study` of two-alternative forced-choice pairs (our
  composite against the original render); the placement of ours is balanced left/right and
  seeded per participant (:func:`presentation_order`); :func:`tally` tests the pooled proportion
  against 0.5 with a sign test over participants.
"""

from __future__ import annotations

import dataclasses
import functools
import datetime as _dt
import hashlib
import random
import re
from collections import Counter
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

from drfhq_lib.errors import DrfhqError

KINDS = ("inversion", "fullbody")

FIGURE_OF = {"inversion": "Fig. 6", "fullbody": "Fig. 15"}

TITLE_OF = {"inversion": "ours among StyleGAN inversion methods",
            "fullbody": "full-body renders: our composite vs original"}

UNIT_OF = {"inversion": "sets", "fullbody": "pairs"}

PAPER_SETS = {"inversion": 10, "fullbody": 20}

PAPER_PARTICIPANTS = {"inversion": 20, "fullbody": 24}

#: Fig. 6's competitors (the ``drfhq_lib.eval.inversion`` names of Fig. 7 besides ours).
FIG6_METHODS = ("e4e", "psp", "hyperstyle", "restyle-psp", "restyle-e4e", "latent-optimisation")
#: Folders of a results tree that are never a method (Fig. 7 writes its aligned inputs there).
NOT_METHODS = frozenset({"aligned"})

#: Fig. 15 (pairs): one row per pair shown.
PAIR_COLUMNS = ("participant", "study", "trial", "set", "method", "ours_side", "choice",
                "chose_ours", "timestamp", "simulated")
#: Fig. 6 (one choice per set): ``shown`` lists the methods in the order displayed (positions
#: 1.. left to right, then top to bottom), ``choice`` the method picked.
CHOICE_COLUMNS = ("participant", "study", "set", "shown", "ours_position", "choice",
                  "chosen_position", "chose_ours", "timestamp", "simulated")
COLUMNS_OF = {"fullbody": PAIR_COLUMNS, "inversion": CHOICE_COLUMNS}
#: The column naming one trial of a participant (the first answer of it counts).
KEY_OF = {"fullbody": "trial", "inversion": "set"}

SIDES = ("left", "right")

SIMULATED_WARNING = "SIMULATED responses — not study results"

INDEPENDENCE_NOTE = ("pooled test treats every trial as independent; trials of one participant "
                     "are not, so the per-participant counts are the conservative check")

#: A participant id: names no file, fits a cookie name and a URL without escaping.
PARTICIPANT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


class StudyError(DrfhqError):
    """A study, its image files or a responses file is missing or malformed."""


def check_participant(participant: str | None) -> str:
    """The participant id, stripped; refused unless it is 1-64 letters, digits, '-' or '_'."""
    pid = (participant or "").strip()
    if not pid:
        raise StudyError("enter a participant id, then press Start")
    if not PARTICIPANT_ID.fullmatch(pid):
        raise StudyError(f"participant id {pid[:80]!r}: use 1-64 letters, digits, '-' or '_', "
                         "starting with a letter or digit")
    return pid


# ----------------------------------------------------------------- Fig. 15: pairs (2AFC)

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
    """Fig. 15's pairs (each its own set). Fig. 6 is a :class:`ChoiceStudy`, not pairs."""

    kind: str
    trials: tuple[Trial, ...]
    ours: str = "ours"
    placeholder: bool = False  # True: generated stand-in images, for CI and demos only

    def __post_init__(self):
        if self.kind != "fullbody":
            raise StudyError(f"pairwise studies are Fig. 15's ('fullbody'), not {self.kind!r}: "
                             "Fig. 6 shows all methods at once (ChoiceStudy)")

    def sets(self) -> list[str]:
        return sorted({t.set for t in self.trials})

    def images(self) -> list[str]:
        return sorted({p for t in self.trials for p in (t.path_ours, t.path_other)})

    def as_dict(self) -> dict:
        return {"kind": self.kind, "ours": self.ours, "placeholder": self.placeholder,
                "trials": [dataclasses.asdict(t) for t in self.trials]}


def _participant_rng(kind: str, participant: str) -> random.Random:
    # sha256, not hash(): Python salts str hashes per process, and the order must survive one.
    digest = hashlib.sha256(f"{kind}\x00{participant}".encode("utf-8")).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def presentation_order(study: Study, participant: str) -> list[tuple[Trial, str]]:
    """``(trial, side of ours)`` in the order shown to ``participant``, the same every time:
    pairs in random order, ours on the left in half of them."""
    rng = _participant_rng(study.kind, participant)
    order = sorted(study.trials, key=lambda t: t.trial)
    rng.shuffle(order)
    sides = [SIDES[i % 2] for i in range(len(order))]
    rng.shuffle(sides)
    return list(zip(order, sides))


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


def _flag(value: bool) -> str:
    return "true" if value else "false"


def response_row(participant: str, kind: str, trial: Trial, ours_side: str, choice: str,
                 simulated: bool = False, timestamp: str | None = None) -> dict:
    """One Fig. 15 answer: ``choice`` ('left'/'right') with ours shown on ``ours_side``."""
    if ours_side not in SIDES or choice not in SIDES:
        raise ValueError(f"sides are {SIDES}, got ours_side={ours_side!r} choice={choice!r}")
    return {"participant": participant, "study": kind, "trial": trial.trial, "set": trial.set,
            "method": trial.method, "ours_side": ours_side, "choice": choice,
            "chose_ours": _flag(choice == ours_side), "timestamp": timestamp or _now(),
            "simulated": _flag(simulated)}


@dataclasses.dataclass
class Responses:
    path: Path
    rows: list[dict]  # validated, first answer of each (participant, study, trial) only
    simulated: bool
    duplicates: int = 0  # later answers of an already answered trial, ignored
    partial_lines: int = 0  # a last line without newline (a write cut by a crash), ignored
    kind: str | None = None  # the study the file's columns belong to (None: empty file)


@functools.lru_cache(maxsize=4096)
def _binomial(k: int, n: int, p: float) -> tuple[float, float, float]:
    from scipy.stats import binomtest

    result = binomtest(k, n, p, alternative="two-sided")
    ci = result.proportion_ci(confidence_level=0.95, method="exact")
    return float(result.pvalue), float(ci.low), float(ci.high)


def _exact(k: int, n: int, p: float = 0.5) -> dict:
    """Proportion, two-sided exact binomial p against ``p``, and its Clopper-Pearson 95% CI."""
    p_value, low, high = _binomial(k, n, p)
    return {"k": k, "n": n, "proportion": k / n, "p_value": p_value, "ci95": [low, high]}


def _participant_tally(rows: list[dict]) -> dict:
    wins = sum(row["chose_ours"] == "true" for row in rows)
    test = _exact(wins, len(rows))
    return {"participant": rows[0]["participant"], "ours_chosen": wins, "out_of": len(rows),
            "expected_without_preference": len(rows) / 2, "proportion": test["proportion"],
            "ci95": test["ci95"], "p_value": test["p_value"]}


def tally(responses: Responses, kind: str = "fullbody", study: Study | None = None) -> dict:
    """Fig. 15's counts per participant (pairs where ours was chosen), its histogram, the
    pooled exact binomial test against 0.5 and a sign test over participants."""
    if kind != "fullbody":
        raise StudyError("Fig. 6 is one choice among all methods per set, not pairs: tally it "
                         "with choice_tally (or study_tally)")
    rows = [r for r in responses.rows if r["study"] == kind]
    if not rows:
        raise StudyError(f"{responses.path}: no responses of the {kind!r} study")
    by_participant: dict[str, list[dict]] = {}
    for row in rows:
        by_participant.setdefault(row["participant"], []).append(row)
    participants = [_participant_tally(r) for _, r in sorted(by_participant.items())]
    above = sum(p["proportion"] > 0.5 for p in participants)
    below = sum(p["proportion"] < 0.5 for p in participants)
    sign = _exact(above, above + below) if above + below else None
    pooled = _exact(sum(p["ours_chosen"] for p in participants), len(rows))
    expected = len(study.trials) if study else None
    return {
        "study": kind, "figure": FIGURE_OF[kind], "simulated": responses.simulated,
        "responses_file": str(responses.path),
        "design": "two-alternative forced choice: our composite vs the original render, "
                  "placement balanced left/right and seeded per participant",
        "unit": UNIT_OF[kind], "chance": 0.5,
        "n_participants": len(participants), "n_trials": len(rows),
        "n_sets": len({r["set"] for r in rows}), "duplicates_ignored": responses.duplicates,
        "partial_lines_ignored": responses.partial_lines,
        "incomplete_participants": sorted(p["participant"] for p in participants
                                          if expected and p["out_of"] < expected),
        "histogram": dict(sorted(Counter(p["ours_chosen"] for p in participants).items())),
        "participants": participants,
        "pooled": {**pooled, "test": "two-sided exact binomial, trials pooled, H0: p = 1/2",
                   "note": INDEPENDENCE_NOTE},
        "sign_test": None if sign is None else {
            **sign, "participants_above_half": above, "participants_below_half": below,
            "ties": len(participants) - above - below,
            "test": "two-sided sign test of participant proportions vs 0.5 (ties dropped)"},
    }


# ----------------------------------------------------------------- Fig. 6: one choice per set

@dataclasses.dataclass(frozen=True)
class ChoiceSet:
    """One trial of Fig. 6: every method's result for input ``set``; one is chosen."""

    set: str
    paths: tuple[tuple[str, str], ...]  # (method, image file), ours included

    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(m for m, _ in self.paths)


@dataclasses.dataclass(frozen=True)
class ChoiceStudy:
    """Fig. 6: each set shows ours and every method of ``methods``; ``missing`` names methods
    asked for but left out (allowed only by an explicit flag), with why."""

    sets: tuple[ChoiceSet, ...]
    methods: tuple[str, ...]  # the competitors shown, in the order given
    ours: str = "ours"
    missing: tuple[tuple[str, str], ...] = ()  # (method, reason)
    placeholder: bool = False  # True: generated stand-in images, for CI and demos only

    kind = "inversion"

    @property
    def options(self) -> int:
        return len(self.methods) + 1

    def set_names(self) -> list[str]:
        return sorted(s.set for s in self.sets)

    def images(self) -> list[str]:
        return sorted({p for s in self.sets for _, p in s.paths})

    def as_dict(self) -> dict:
        return {"kind": self.kind, "design": "choice", "ours": self.ours,
                "methods": list(self.methods), "placeholder": self.placeholder,
                "missing": [{"method": m, "reason": r} for m, r in self.missing],
                "sets": [{"set": s.set, "paths": [{"method": m, "path": p} for m, p in s.paths]}
                         for s in self.sets]}


def choice_study_from_dict(record: Mapping) -> ChoiceStudy:
    """The inverse of :meth:`ChoiceStudy.as_dict` (KeyError/TypeError/ValueError if malformed)."""
    if record.get("design") != "choice":
        raise ValueError("not a one-choice-per-set study (a pairwise Fig. 6 study of an older "
                         "drfhq)")
    ours = record.get("ours", "ours")
    methods = check_methods(record["methods"], ours)
    sets = tuple(ChoiceSet(s["set"], tuple((p["method"], p["path"]) for p in s["paths"]))
                 for s in record["sets"])
    for s in sets:
        if sorted(s.methods) != sorted((ours, *methods)):
            raise ValueError(f"set {s.set!r} shows {list(s.methods)}, not ours and {list(methods)}")
    if not sets or len({s.set for s in sets}) != len(sets):
        raise ValueError("no sets, or a set named twice")
    missing = tuple((m["method"], m["reason"]) for m in record.get("missing", ()))
    return ChoiceStudy(sets, methods, ours, missing, bool(record.get("placeholder", False)))


def check_methods(methods: Sequence[str], ours: str = "ours") -> tuple[str, ...]:
    """The competitors as given, refusing non-methods (``aligned``), ours and repeats."""
    methods = tuple(methods)
    bad = sorted({m for m in methods if m in NOT_METHODS or m == ours})
    if bad:
        raise StudyError(f"{', '.join(bad)}: not a competing method (aligned/ holds the inputs "
                         f"and {ours!r} is ours); list the inversion methods explicitly")
    if len(set(methods)) != len(methods) or not methods:
        raise StudyError(f"methods must be a non-empty list without repeats, got {list(methods)}")
    odd = [m for m in (ours, *methods) if not m or "|" in m or m != m.strip()]
    if odd:
        raise StudyError(f"method names {odd}: must be non-empty, without '|' or outer spaces")
    return methods


def choice_order(study: ChoiceStudy, participant: str) -> list[ChoiceSet]:
    """The sets in the order ``participant`` sees them, each set's images in a seeded random
    order of its own (the same every time for this participant and set)."""
    rng = _participant_rng("choice", participant)
    sets = sorted(study.sets, key=lambda s: s.set)
    rng.shuffle(sets)
    shown = []
    for choice_set in sets:
        paths = list(choice_set.paths)
        _participant_rng(f"choice\x00{choice_set.set}", participant).shuffle(paths)
        shown.append(ChoiceSet(choice_set.set, tuple(paths)))
    return shown


def choice_row(participant: str, shown: ChoiceSet, position: int, ours: str = "ours",
               simulated: bool = False, timestamp: str | None = None) -> dict:
    """One Fig. 6 answer: the image at ``position`` (0-based, in the order shown) chosen."""
    methods = shown.methods
    if not 0 <= position < len(methods):
        raise ValueError(f"position must be 0..{len(methods) - 1}, got {position!r}")
    return {"participant": participant, "study": "inversion", "set": shown.set,
            "shown": "|".join(methods), "ours_position": str(methods.index(ours) + 1),
            "choice": methods[position], "chosen_position": str(position + 1),
            "chose_ours": _flag(methods[position] == ours), "timestamp": timestamp or _now(),
            "simulated": _flag(simulated)}


def choices_of(responses: Responses) -> dict[str, dict[str, str]]:
    """``{participant: {set: chosen method}}`` of a Fig. 6 responses file."""
    choices: dict[str, dict[str, str]] = {}
    for row in responses.rows:
        if row["study"] == "inversion":
            choices.setdefault(row["participant"], {})[row["set"]] = row["choice"]
    return choices


def choice_tally(study: ChoiceStudy, choices: Mapping[str, Mapping[str, str]],
                 simulated: bool = False) -> dict:
    """Fig. 6's tally from ``{participant: {set: chosen method}}``: per participant the number
    of sets where ours was chosen (out of the sets answered), the histogram of those counts
    (the paper's layout, see ``study_figures.tally_figure``), an exact binomial test against
    chance 1/options with Clopper-Pearson 95% intervals (per participant and pooled), and the
    share of choices of each method."""
    names = {s.set: set(s.methods) for s in study.sets}
    chance = 1 / study.options
    participants, counts = [], Counter()
    for participant, answers in sorted(choices.items()):
        for name, method in answers.items():
            if method not in names.get(name, ()):
                raise StudyError(f"{participant}: {method!r} is not one of the images of set "
                                 f"{name!r}")
        if not answers:
            continue
        k = sum(m == study.ours for m in answers.values())
        counts.update(answers.values())
        test = _exact(k, len(answers), chance)
        participants.append({"participant": participant, "ours_chosen": k,
                             "out_of": len(answers),
                             "expected_without_preference": len(answers) * chance,
                             "proportion": test["proportion"], "ci95": test["ci95"],
                             "p_value": test["p_value"]})
    if not participants:
        raise StudyError("no choices of the Fig. 6 study")
    n = sum(p["out_of"] for p in participants)
    pooled = _exact(sum(p["ours_chosen"] for p in participants), n, chance)
    shown = (study.ours, *study.methods)
    return {
        "study": "inversion", "figure": FIGURE_OF["inversion"], "simulated": simulated,
        "design": f"one choice among {study.options} images per set (ours and "
                  f"{len(study.methods)} methods, seeded random order per participant and set)",
        "unit": "sets", "chance": chance, "methods": list(study.methods),
        "missing_methods": [{"method": m, "reason": r} for m, r in study.missing],
        "n_participants": len(participants), "n_trials": n, "n_sets": len(study.sets),
        "incomplete_participants": sorted(p["participant"] for p in participants
                                          if p["out_of"] < len(study.sets)),
        "histogram": dict(sorted(Counter(p["ours_chosen"] for p in participants).items())),
        "participants": participants,
        "share_of_choices": {m: counts[m] / n for m in shown},
        "pooled": {**pooled, "test": f"two-sided exact binomial, H0: p = 1/{study.options}",
                   "note": INDEPENDENCE_NOTE},
        "sign_test": None,
    }


def study_tally(responses: Responses, study: Study | ChoiceStudy) -> dict:
    """The tally of either study from its responses file (Fig. 6: :func:`choice_tally`;
    Fig. 15: :func:`tally`), naming the file and what the reader ignored."""
    if isinstance(study, Study):
        return tally(responses, study.kind, study)
    result = choice_tally(study, choices_of(responses), responses.simulated)
    return {**result, "responses_file": str(responses.path),
            "duplicates_ignored": responses.duplicates,
            "partial_lines_ignored": responses.partial_lines}


def simulated_picks(study: ChoiceStudy, n_participants: int, pick, seed: int = 0
                    ) -> Iterator[tuple[str, ChoiceSet, str]]:
    """SIMULATED participants ``simulated-01``..: ``(participant, set as shown, method)``,
    where ``pick(rng, methods shown, ours)`` returns the chosen method of one set."""
    rng = random.Random(seed)
    for i in range(n_participants):
        participant = f"simulated-{i + 1:02d}"
        for shown in choice_order(study, participant):
            yield participant, shown, pick(rng, shown.methods, study.ours)


def simulate_choices(study: ChoiceStudy, n_participants: int, pick, seed: int = 0
                     ) -> dict[str, dict[str, str]]:
    """SIMULATED choices (tests and demos) as ``{participant: {set: method}}``."""
    choices: dict[str, dict[str, str]] = {}
    for participant, shown, method in simulated_picks(study, n_participants, pick, seed):
        choices.setdefault(participant, {})[shown.set] = method
    return choices


def pick_ours_with(p_ours: float) -> Callable:
    """A simulated chooser: ours with probability ``p_ours``, else one other image uniformly."""
    def pick(rng, methods, ours):
        others = [m for m in methods if m != ours]
        return ours if rng.random() < p_ours or not others else rng.choice(others)
    return pick
