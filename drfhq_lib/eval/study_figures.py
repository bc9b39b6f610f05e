"""The user-study figure (Fig. 6 / Fig. 15) in the paper's layout, from :func:`~drfhq_lib.eval.study.tally`."""

from __future__ import annotations

from typing import Sequence

from drfhq_lib.eval.study import SIMULATED_WARNING, TITLE_OF


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
