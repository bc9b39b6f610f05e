"""The inversion figures: Fig. 7/11/12 (one row per input, one column per method) and Fig. 14.

Drawn from a run of ``drfhq_lib.eval.inversion_runs`` (its rows and ``OUT/<method>/<name>.png``
files) with ``drfhq_lib.eval.figures.image_grid``; a missing result is a cell saying why.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from drfhq_lib.data.images import load_image
from drfhq_lib.eval.figures import cell_text
from drfhq_lib.eval.inversion import get_method
from drfhq_lib.infer.enhance import Networks
from drfhq_lib.nets.weights import Resolved
from drfhq_lib.provenance import label_for_figure

if TYPE_CHECKING:
    from drfhq_lib.eval.inversion_runs import FailureRun, InversionRun


def figure_note(nets: Networks, networks: Iterable[Resolved], extra: str = "") -> str:
    """Small print for a figure: substitutes, and that G_rendering is not fine-tuned."""
    parts = [label_for_figure(networks)]
    if nets.G_rendering is nets.G_real:
        parts.append("G_rendering = G_real (not fine-tuned): 'ours' is not the paper's method here")
    return "; ".join(p for p in [*parts, extra] if p)


def grid_cells(run: InversionRun, methods: list[str]) -> tuple[list, list, list[str], list[str]]:
    """Rows of (aligned input, one result per method) for ``figures.image_grid``: a cell is
    None where a method did not give a result, with the reason in ``missing``."""
    by_item = {r["item"]: r for r in run.rows}
    cells, missing = [], []
    for name in run.names:
        row_cells: list = [load_image(run.out_dir / "aligned" / f"{name}.png")]
        row_missing = [""]
        for m in methods:
            row = by_item.get(f"{m}/{name}", {})
            result = run.out_dir / m / f"{name}.png"
            ok = row.get("status") == "ok" and result.exists()
            row_cells.append(load_image(result) if ok else None)
            row_missing.append("" if ok else _short_reason(m, row))
        cells.append(row_cells)
        missing.append(row_missing)
    col_labels = ["input"] + [get_method(m).label for m in methods]
    return cells, missing, list(run.names), col_labels


def _short_reason(method: str, row: dict) -> str:
    """What a figure cell says for a missing result, wrapped to fit the cell."""
    m = get_method(method)
    if row.get("status") == "not run" and not m.runs_here:
        return cell_text(f"needs {m.checkpoint}")
    return cell_text(row.get("status", "no row") + (": " + row["reason"][:60]
                                                    if row.get("reason") else ""))


def comparison_figure(run: InversionRun, methods: list[str], nets: Networks, title: str,
                      extra_note: str = ""):
    """The Fig. 7/11/12 grid, stamped when the networks are untrained stand-ins."""
    from drfhq_lib.eval.figures import UNTRAINED, image_grid

    cells, missing, row_labels, col_labels = grid_cells(run, methods)
    return image_grid(cells, row_labels, col_labels, title=title,
                      warning="" if run.trained else UNTRAINED,
                      note=figure_note(nets, run.networks, extra_note), missing=missing)

FAILURE_COLUMNS = ["input", "ours (G_real)", "pasted back"]


def failure_figure(run: FailureRun, nets: Networks, title: str = "Fig. 14: failure cases"):
    """Fig. 14's grid: one row per case, its numbers in the row label."""
    from drfhq_lib.eval.figures import UNTRAINED, image_grid

    return image_grid(run.panels, run.row_labels, FAILURE_COLUMNS, title=title,
                      warning="" if nets.trained else UNTRAINED,
                      note=figure_note(nets, run.networks), missing=run.missing)
