"""The user-study figure (Fig. 6 / Fig. 15) in the paper's layout, from the tallies of
:func:`~drfhq_lib.eval.study.choice_tally` (Fig. 6) and :func:`~drfhq_lib.eval.study.tally`
(Fig. 15)."""

from __future__ import annotations

from fractions import Fraction
from typing import Sequence

from drfhq_lib.eval.study import SIMULATED_WARNING, TITLE_OF


def _chance(p: float) -> str:
    f = Fraction(p).limit_denominator(50)
    return f"{f.numerator}/{f.denominator}"


def panel_text(t: dict) -> str:
    """The test of one study, as printed in its panel."""
    pooled, sign = t["pooled"], t["sign_test"]
    text = (f"ours in {pooled['k']}/{pooled['n']} {t['unit']} = {pooled['proportion']:.0%} "
            f"(chance {_chance(t['chance'])})\n"
            f"95% CI {pooled['ci95'][0]:.0%}–{pooled['ci95'][1]:.0%}, "
            f"binomial p = {pooled['p_value']:.2g}")
    if sign:
        text += f"\nsign test over participants p = {sign['p_value']:.2g}"
    if t.get("share_of_choices"):
        text += "\nshare of choices: " + ", ".join(
            f"{m}\u00a0{s:.0%}" for m, s in t["share_of_choices"].items())
    if t.get("missing_methods"):
        text += "\nMISSING (no results): " + ", ".join(m["method"] for m in t["missing_methods"])
    if t.get("incomplete_participants"):
        text += f"\n{len(t['incomplete_participants'])} participant(s) incomplete"
    return text


def tally_figure(tallies: Sequence[dict], note: str = ""):
    """One horizontal histogram per study in the paper's layout (y: ours chosen, x: number
    of participants), with the test, the chance level and (Fig. 6) each method's share of the
    choices under it; simulated data stamped as such."""
    import textwrap

    from matplotlib.ticker import MaxNLocator

    from drfhq_lib.eval.figures import _pyplot, decorate

    plt = _pyplot()
    fig, axes = plt.subplots(1, len(tallies), squeeze=False,
                             figsize=(4.6 * len(tallies), 4.8))
    for ax, t in zip(axes[0], tallies):
        out_of = max(p["out_of"] for p in t["participants"])
        counts = list(range(out_of + 1))
        ax.barh(counts, [t["histogram"].get(c, 0) for c in counts], color="#4878a8")
        ax.set_yticks(counts)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(f"ours chosen (out of {out_of} {t['unit']})", fontsize=8)
        ax.set_xlabel(f"number of participants (n = {t['n_participants']})", fontsize=8)
        ax.set_title(f"{t['figure']}: {TITLE_OF[t['study']]}", fontsize=9)
        expected = out_of * t["chance"]
        ax.axhline(expected, color="#c04040", lw=0.8, ls="--")
        ax.text(ax.get_xlim()[1], expected, f" chance: {expected:.2g}", color="#c04040",
                fontsize=6, va="bottom", ha="right")
        ax.text(0.0, -0.16, "\n".join(textwrap.fill(line, 70, break_on_hyphens=False)
                                       for line in panel_text(t).splitlines()),
                transform=ax.transAxes, ha="left", va="top", fontsize=6.5)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    simulated = any(t["simulated"] for t in tallies)
    decorate(fig, warning=SIMULATED_WARNING if simulated else "", note=note)
    return fig
