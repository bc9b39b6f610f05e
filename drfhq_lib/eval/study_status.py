"""What ``drfhq study status STUDY_DIR`` shows: per study, each participant's progress and the
current counts (the tallies of :mod:`drfhq_lib.eval.study`), real and simulated apart."""

from __future__ import annotations

import os
from pathlib import Path

from drfhq_lib.eval.study import FIGURE_OF, SIMULATED_WARNING, UNIT_OF, ChoiceStudy, study_tally
from drfhq_lib.eval.study_files import served_studies
from drfhq_lib.eval.study_responses import read_responses, responses_path


def study_status(study_dir: str | os.PathLike, simulated: bool = False) -> list[dict]:
    """One record per frozen study of ``study_dir``: its size, its responses file and, when
    there are responses, the participants' progress and the tally."""
    records = []
    for kind, study in served_studies(study_dir, simulated).items():
        total = len(study.sets) if isinstance(study, ChoiceStudy) else len(study.trials)
        path = responses_path(study_dir, kind, simulated)
        record = {"study": kind, "figure": FIGURE_OF[kind], "unit": UNIT_OF[kind],
                  "trials": total, "responses": str(path), "simulated": simulated,
                  "stand_in_images": study.placeholder, "participants": [], "tally": None}
        if path.is_file() and path.stat().st_size:
            responses = read_responses(path)
            if responses.rows:
                tally = study_tally(responses, study)
                record["tally"] = tally
                record["participants"] = [
                    {"participant": p["participant"], "answered": p["out_of"],
                     "finished": p["out_of"] >= total, "ours_chosen": p["ours_chosen"]}
                    for p in tally["participants"]]
        records.append(record)
    return records


def format_status(records: list[dict], study_dir: str | os.PathLike) -> str:
    lines = []
    for r in records:
        head = f"{r['figure']} ({r['study']}): {r['trials']} {r['unit']}; {r['responses']}"
        if r["simulated"]:
            head = f"{SIMULATED_WARNING}\n{head}"
        if r["stand_in_images"]:
            head += " [stand-in images]"
        lines.append(head)
        if not r["participants"]:
            lines += ["  no responses yet", ""]
            continue
        width = max(11, *(len(p["participant"]) for p in r["participants"]))
        lines.append(f"  {'participant':<{width}}  answered  ours chosen")
        for p in r["participants"]:
            lines.append(f"  {p['participant']:<{width}}  {p['answered']:>3}/{r['trials']:<4}  "
                         f"{p['ours_chosen']:>5}" + ("" if p["finished"] else "  (in progress)"))
        t = r["tally"]
        pooled = t["pooled"]
        finished = sum(p["finished"] for p in r["participants"])
        lines.append(f"  {len(r['participants'])} participant(s), {finished} finished; ours "
                     f"chosen in {pooled['k']} of {pooled['n']} {r['unit']} "
                     f"({pooled['proportion']:.0%}; chance {t['chance']:.0%}; exact binomial "
                     f"p = {pooled['p_value']:.2g})")
        if t.get("share_of_choices"):
            lines.append("  share of choices: " + ", ".join(
                f"{m} {s:.0%}" for m, s in t["share_of_choices"].items()))
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
