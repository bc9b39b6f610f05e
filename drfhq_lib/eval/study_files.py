"""Studies built from image files and frozen as a small JSON (what participants saw).

* ``inversion`` (Fig. 6): ``RESULTS/<method>/<name>.png`` (one folder per method, as the Fig. 7
  notebook writes them; ours in ``RESULTS/ours``), for an explicit list of methods; one set per
  input showing ours and every method (:func:`choice_study`).
* ``fullbody`` (Fig. 15): the original render ``IN/name.ext`` against our composite
  ``OUT/name.png`` (as ``drfhq enhance`` writes it).
* Stand-in studies of labelled grey images, for CI and demos of the app only.

The trials, order and tallies are in :mod:`drfhq_lib.eval.study`.
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path
from typing import Callable, Sequence

from drfhq_lib.eval.study import (FIG6_METHODS, KINDS, PAPER_SETS, ChoiceSet, ChoiceStudy, Study,
                                  StudyError, Trial, check_methods, choice_study_from_dict)
from drfhq_lib.files import write_json_atomic

AnyStudy = Study | ChoiceStudy


def _images_by_stem(folder: Path, pattern: str = "*") -> dict[str, Path]:
    from drfhq_lib.data.images import list_images  # here: serving a frozen study needs no torch

    if not folder.is_dir():
        return {}
    return {p.stem: p for p in list_images(folder) if fnmatch.fnmatch(p.name, pattern)}


def choice_study(results: str | os.PathLike, methods: Sequence[str] = FIG6_METHODS,
                 ours: str = "ours", allow_missing: bool = False) -> ChoiceStudy:
    """Fig. 6 as the paper ran it, from ``results/<method>/<name>.<ext>``: one set per input
    name that ours has, showing ours and every method of the explicit list ``methods``.

    A method without a result for every input is refused, naming what is missing; with
    ``allow_missing`` it is left out of every set (so all sets offer the same choices) and
    listed in ``ChoiceStudy.missing``. ``aligned/`` is never a method."""
    root = Path(results)
    methods = check_methods(methods, ours)
    ours_files = _images_by_stem(root / ours)
    if not ours_files:
        raise StudyError(f"{root / ours}: no images of our results; run the Fig. 7 notebook so "
                         f"that {root} holds one folder per method")
    files = {m: _images_by_stem(root / m) for m in methods}
    missing = []
    for m in methods:
        lacking = sorted(set(ours_files) - set(files[m]))
        if lacking:
            shown = ", ".join(lacking[:4]) + (" ..." if len(lacking) > 4 else "")
            missing.append((m, f"no result in {root / m} for {len(lacking)} of "
                               f"{len(ours_files)} inputs ({shown})"))
    if missing and not allow_missing:
        raise StudyError("; ".join(f"{m}: {r}" for m, r in missing) + ". Run those methods "
                         "(Fig. 7 notebook), drop them from `methods`, or pass "
                         "allow_missing=True to show them as missing")
    shown = tuple(m for m in methods if m not in dict(missing))
    if not shown:
        raise StudyError(f"{root}: none of {list(methods)} has results; nothing to compare")
    sets = tuple(ChoiceSet(name, ((ours, str(path)),
                                  *((m, str(files[m][name])) for m in shown)))
                 for name, path in sorted(ours_files.items()))
    return ChoiceStudy(sets, shown, ours, tuple(missing))


def _checked_study(kind: str, trials: list[Trial], missing: list[str], strict: bool,
                   where: str, remedy: str, ours: str = "ours") -> Study:
    if missing and strict:
        shown = ", ".join(missing[:8]) + (" ..." if len(missing) > 8 else "")
        raise StudyError(f"{where}: {len(missing)} comparison image(s) missing ({shown}); "
                         f"{remedy}, or pass strict=False to leave those trials out")
    if not trials:
        raise StudyError(f"{where}: no trials could be built; {remedy}")
    return Study(kind, tuple(trials), ours)


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


def save_study(study: AnyStudy, path: str | os.PathLike) -> Path:
    return write_json_atomic(path, study.as_dict())


def load_study(path: str | os.PathLike) -> AnyStudy:
    """A study frozen by :func:`save_study`: a :class:`ChoiceStudy` (Fig. 6) or a
    :class:`Study` of pairs (Fig. 15)."""
    import json

    path = Path(path)
    remedy = ("delete it and rebuild it (`drfhq study build`, or notebook 15 which freezes it "
              "on first use)")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        if record.get("kind") == "inversion":
            return choice_study_from_dict(record)
        trials = tuple(Trial(**t) for t in record["trials"])
        study = Study(record["kind"], trials, record.get("ours", "ours"),
                      bool(record.get("placeholder", False)))
    except FileNotFoundError:
        raise StudyError(f"{path}: no such study file; build one with `drfhq study build` (or "
                         "choice_study / fullbody_study and save_study)") from None
    except (ValueError, KeyError, TypeError, AttributeError, StudyError) as err:
        raise StudyError(f"{path}: not a study JSON of this drfhq ({err}); {remedy}") from None
    if study.kind not in KINDS or not trials:
        raise StudyError(f"{path}: study kind must be one of {KINDS} with at least one trial")
    return study


def _stand_in(path: Path, label: str, size: int) -> str:
    from PIL import Image, ImageDraw

    if not path.exists():
        image = Image.new("RGB", (size, size), (128, 128, 128))
        ImageDraw.Draw(image).text((2, 2), label, fill=(0, 0, 0))
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path)
    return str(path)


def placeholder_study(kind: str, folder: str | os.PathLike, n_sets: int | None = None,
                      methods: Sequence[str] = FIG6_METHODS, size: int = 48) -> AnyStudy:
    """A study of labelled grey stand-in images, for CI and demos of the app (never results)."""
    folder = Path(folder)
    n_sets = n_sets or PAPER_SETS[kind]
    names = [f"placeholder{i + 1:02d}" for i in range(n_sets)]

    def image(method, i):
        return _stand_in(folder / kind / method / f"{names[i]}.png",
                         f"stand-in\n{method}\n{i + 1}", size)

    if kind == "inversion":
        methods = check_methods(methods)
        sets = tuple(ChoiceSet(name, tuple((m, image(m, i)) for m in ("ours", *methods)))
                     for i, name in enumerate(names))
        return ChoiceStudy(sets, methods, placeholder=True)
    trials = tuple(Trial(f"{name}/original", name, "original", image("ours", i),
                         image("original", i)) for i, name in enumerate(names))
    return Study(kind, trials, placeholder=True)


def load_or_build_study(path: str | os.PathLike, build: Callable[[], AnyStudy]) -> AnyStudy:
    """The study frozen at ``path`` (what participants saw); built and saved on first use."""
    path = Path(path)
    if path.exists():
        return load_study(path)
    study = build()
    save_study(study, path)
    return study


def study_path(work_dir: str | os.PathLike, kind: str, simulated: bool = False) -> Path:
    """Where a study is frozen: ``work_dir/study_<kind>.json`` (stand-ins under simulated/)."""
    return Path(work_dir) / ("simulated" if simulated else "") / f"study_{kind}.json"


def notebook_studies(work_dir: str | os.PathLike, inversion_results: str, ours: str,
                     fullbody_inputs: str, fullbody_results: str, fullbody_pattern: str,
                     placeholders: bool, methods: Sequence[str] = FIG6_METHODS,
                     allow_missing: bool = False) -> dict[str, AnyStudy]:
    """Both studies, frozen in ``work_dir/study_<kind>.json`` on first use (what participants
    see). With ``placeholders`` (simulation only), a study whose images are not there yet is
    replaced by stand-ins kept under ``work_dir/simulated`` (apart from real studies)."""
    work_dir = Path(work_dir)
    builders = {
        "inversion": lambda: choice_study(inversion_results, methods, ours, allow_missing),
        "fullbody": lambda: fullbody_study(fullbody_inputs, fullbody_results, fullbody_pattern),
    }
    studies = {}
    for kind, build in builders.items():
        try:
            studies[kind] = load_or_build_study(study_path(work_dir, kind), build)
        except StudyError as err:
            if not placeholders:
                raise
            print(f"{kind}: {err}\n  -> stand-in images (simulation only)")
            studies[kind] = load_or_build_study(
                study_path(work_dir, kind, simulated=True),
                lambda kind=kind: placeholder_study(kind, work_dir / "simulated" / "images",
                                                    methods=methods))
    return studies


def served_studies(work_dir: str | os.PathLike, simulated: bool = False) -> dict[str, AnyStudy]:
    """The frozen studies of ``work_dir`` that are there, for the web server and ``drfhq study
    status``. Stand-in studies (``simulated/``) only when ``simulated``, where no real one is."""
    studies = {}
    for kind in KINDS:
        paths = [study_path(work_dir, kind)] + ([study_path(work_dir, kind, True)]
                                                if simulated else [])
        found = [p for p in paths if p.is_file()]
        if found:
            studies[kind] = load_study(found[0])
    if not studies:
        stand_ins = not simulated and any(study_path(work_dir, k, True).is_file() for k in KINDS)
        raise StudyError(f"{Path(work_dir) / 'study_<kind>.json'}: no frozen study; build them "
                         f"with `drfhq study build {work_dir} ...` or run notebook 15 once"
                         + (" (`--placeholders` builds stand-ins for a demo)" if simulated else "")
                         + ("; simulated/ holds stand-in images, served only with --simulated"
                            if stand_ins else ""))
    return studies
