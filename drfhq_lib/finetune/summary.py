"""Reading a run back: its log, a summary for tables, and the G_real / G_rendering comparison
figure of the notebook (Fig. 10's layout: one column per latent)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from drfhq_lib.nets import load_network
from drfhq_lib.finetune.trainer import LOG_NAME
from drfhq_lib.nets.latents import seed_range, z_from_seeds


def read_log(out: str | Path) -> list[dict]:
    """The rows of ``log.jsonl`` (one per snapshot), oldest first."""
    path = Path(out) / LOG_NAME
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def summarize(out: str | Path) -> dict:
    """What a results table needs: the final snapshot's kimg, p, losses and identity, and the
    loss history."""
    rows = read_log(out)
    if not rows:
        return {"out": str(out), "snapshots": 0}
    last = rows[-1]
    return {
        "out": str(out), "snapshots": len(rows), "kimg": last["kimg"], "p": last["p"],
        "losses": last["losses"], "identity": last.get("identity"), "time_s": last["time"],
        "history": [{"kimg": r["kimg"], "p": r["p"], **r["losses"]} for r in rows],
    }


@torch.no_grad()
def render_comparison(network_file: str | Path, source: str | Path, count: int = 8,
                      seed: int = 0, device: torch.device | str = "cpu",
                      truncation_psi: float = 1.0):
    """Images of the same latents from G_real (the source's G_ema) and G_rendering (the run's
    G_ema), const noise: ``(real [N,3,R,R], rendering [N,3,R,R])`` in [-1, 1] on the CPU."""
    source_nets = load_network(source, device)
    G_real = source_nets.get("G_ema", source_nets.get("G"))
    G_rendering = load_network(network_file, device)["G_ema"]
    z = z_from_seeds(seed_range(seed, count), G_real.z_dim, device)  # column i: seed + i
    ws = G_real.mapping(z, None, truncation_psi=truncation_psi)
    return (G_real.synthesis(ws, noise_mode="const").cpu(),
            G_rendering.synthesis(ws, noise_mode="const").cpu())


def save_comparison_figure(path: str | Path, real: torch.Tensor, rendering: torch.Tensor,
                           title: str = "", warning: str = "", note: str = "") -> Path:
    """Two rows (G_real, G_rendering), one column per latent; ``warning`` is printed in red
    across the figure (e.g. for an untrained network), ``note`` in small print below."""
    from drfhq_lib.eval.figures import image_grid, save_figure

    fig = image_grid([list(real), list(rendering)], row_labels=("G_real", "G_rendering"),
                     title=title, warning=warning, note=note)
    return save_figure(fig, path)
