"""The user studies of Sec. 5.2.1 (Fig. 6) and Sec. 7 (Fig. 15): trials, order, tallies, tests.

Compute only (no file or widget I/O). Where the rest lives:

* ``drfhq_lib.eval.study_files``: studies built from result folders, frozen as JSON;
* ``drfhq_lib.eval.study_responses``: the responses CSV (append with fsync, read),
  one participant's :class:`~drfhq_lib.eval.study_responses.Session`, simulated responses;
* ``drfhq_lib.eval.study_figures``: the histogram figure in the paper's layout;
* ``drfhq_lib.apps.study``: the ipywidgets app.

* A :class:`Study` is a list of two-alternative forced-choice trials, each "our result against
  one other image of the same input". For ``inversion`` (Fig. 6) a *set* is one input name and
  holds one trial per other method (the paper: 10 sets, six inversion methods); for
  ``fullbody`` (Fig. 15) each pair is its own set (the paper: 20).
* Trial order (sets shuffled, trials shuffled within a set) and the left/right placement of ours
  (balanced: half left, half right) are seeded from the participant id
  (:func:`presentation_order`), so a participant who reopens the page gets the same sequence.
* :func:`tally` counts, per participant, the sets (or pairs) in which ours was chosen and tests
  the pooled trial-level proportion against 0.5 (exact binomial, Clopper-Pearson 95% CI), with a
  sign test over participants. How a set of several 2AFC trials counts as "ours chosen" is
  ``set_rule`` (see :data:`SET_RULES`).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import random
from collections import Counter
from pathlib import Path
from typing import Mapping, Sequence

from drfhq_lib.errors import DrfhqError

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


@dataclasses.dataclass
class Responses:
    path: Path
    rows: list[dict]  # validated, first answer of each (participant, study, trial) only
    simulated: bool
    duplicates: int = 0  # later answers of an already answered trial, ignored
    partial_lines: int = 0  # a last line without newline (a write cut by a crash), ignored


def _exact(k: int, n: int, p: float = 0.5) -> dict:
    """Proportion, two-sided exact binomial p against ``p``, and its Clopper-Pearson 95% CI."""
    from scipy.stats import binomtest

    result = binomtest(k, n, p, alternative="two-sided")
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


# ----------------------------------------------------------------- Fig. 6 as the paper ran it

#: Fig. 6's competitors (the ``drfhq_lib.eval.inversion`` names of Fig. 7 besides ours).
FIG6_METHODS = ("e4e", "psp", "hyperstyle", "restyle-psp", "restyle-e4e", "latent-optimisation")
#: Folders of a results tree that are never a method (Fig. 7 writes its aligned inputs there).
NOT_METHODS = frozenset({"aligned"})


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

    @property
    def options(self) -> int:
        return len(self.methods) + 1


def check_methods(methods: Sequence[str], ours: str = "ours") -> tuple[str, ...]:
    """The competitors as given, refusing non-methods (``aligned``), ours and repeats."""
    methods = tuple(methods)
    bad = sorted({m for m in methods if m in NOT_METHODS or m == ours})
    if bad:
        raise StudyError(f"{', '.join(bad)}: not a competing method (aligned/ holds the inputs "
                         f"and {ours!r} is ours); list the inversion methods explicitly")
    if len(set(methods)) != len(methods) or not methods:
        raise StudyError(f"methods must be a non-empty list without repeats, got {list(methods)}")
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
        "histogram": dict(sorted(Counter(p["ours_chosen"] for p in participants).items())),
        "participants": participants,
        "share_of_choices": {m: counts[m] / n for m in shown},
        "pooled": {**pooled, "test": f"two-sided exact binomial, H0: p = 1/{study.options}",
                   "note": INDEPENDENCE_NOTE},
        "sign_test": None,
    }


def simulate_choices(study: ChoiceStudy, n_participants: int, pick, seed: int = 0
                     ) -> dict[str, dict[str, str]]:
    """SIMULATED choices (tests and demos): ``pick(rng, methods shown, ours)`` returns the
    chosen method of one set, given in the order the participant sees them."""
    rng = random.Random(seed)
    return {f"simulated-{i + 1:02d}": {s.set: pick(rng, s.methods, study.ours)
                                       for s in choice_order(study, f"simulated-{i + 1:02d}")}
            for i in range(n_participants)}
