"""Fig. 8 (Sec. 5.2.2) as a job on files: SDEdit samples of the aligned inputs beside ours.

It runs on the folder of an inversion run (``drfhq_lib.eval.inversion_runs.run_methods`` with
``methods=["ours"]``): the aligned inputs ``OUT/aligned/<name>.png`` that ours projected are
SDEdit's inputs too, and ``OUT/ours/<name>.png`` is Fig. 8's last column. It writes
``OUT/sdedit/<name>_seed<S>.png`` (one per seed, at the diffusion model's resolution) and
``OUT/sdedit.csv``, one row per (input, seed); a rerun makes only the samples that are missing
(a sample depends on its input and seed alone).

Without a diffusion checkpoint folder (``drfhq_lib.nets.diffusion``) every sample is a
"not run" row naming the folder it needs, and the figure says so in those cells.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from drfhq_lib.data.manifest import Manifest
from drfhq_lib.data.images import load_image, pil_to_tensor, tensor_to_pil
from drfhq_lib.errors import DrfhqError
from drfhq_lib.eval.figures import cell_text
from drfhq_lib.eval.inversion import result_metrics
from drfhq_lib.eval.sdedit import SDEditParams, sdedit
from drfhq_lib.files import write_png_atomic
from drfhq_lib.infer.enhance import Networks
from drfhq_lib.nets import diffusion
from drfhq_lib.nets.perceptual import resize
from drfhq_lib.nets.weights import Resolved

if TYPE_CHECKING:
    from drfhq_lib.eval.inversion_runs import InversionRun

FIELDS = ["item", "method", "input", "seed", "status", "reason", "seconds", "t0",
          "start_timestep", "denoising_steps", "num_train_timesteps", "sampler", "lpips",
          "identity_similarity", "identity_note", "embedder", "lpips_net", "output", "model",
          "trained"]
#: What the paper compares with (Sec. 5.2.2), for the figure's small print.
PAPER_MODEL = "the paper: an LDM trained on FFHQ 256"


@dataclass
class SDEditRun:
    """Rows (one per input and seed, in input order), the aligned inputs and what ran."""

    out_dir: Path
    rows: list[dict]
    names: list[str]  # inputs that aligned, in input order
    params: SDEditParams
    networks: list[Resolved] = field(default_factory=list)
    model_label: str = ""  # "" when no checkpoint ran
    notes: list[str] = field(default_factory=list)

    @property
    def ran(self) -> bool:
        return bool(self.model_label)


def sample_path(out_dir: Path, name: str, seed: int) -> Path:
    return Path(out_dir) / "sdedit" / f"{name}_seed{seed}.png"


def _row(name: str, source: str, seed: int, status: str, reason: str = "", **values) -> dict:
    return {"item": f"sdedit/{name}/seed{seed}", "method": "sdedit", "input": source,
            "seed": str(seed), "status": status, "reason": reason, **values}


def _inputs(ours: "InversionRun") -> tuple[dict[str, tuple[str, Path]], dict[str, tuple]]:
    """{name: (input path, aligned file)} of the inputs that aligned, and {name: (input,
    reason)} of those that did not (from the inversion run's rows)."""
    aligned, failed = {}, {}
    for row in ours.rows:
        name = Path(row["input"]).stem
        if name in ours.names:
            aligned[name] = (row["input"], ours.out_dir / "aligned" / f"{name}.png")
        elif name not in failed:
            failed[name] = (row["input"], row["reason"] or row["status"])
    return aligned, failed


def _sampler(model: diffusion.DiffusionModel, params: SDEditParams) -> str:
    """The sampling settings a sample depends on besides t0 and its seed (a rerun with other
    settings makes the samples again)."""
    return (f"{type(model.scheduler).__name__} {params.steps} steps eta {params.eta}; "
            f"{model.resolved.sha256[:12]}")


def _run_samples(model: diffusion.DiffusionModel, todo: dict, params: SDEditParams,
                 out_dir: Path, device, dtype, progress: bool) -> dict[tuple[str, int], dict]:
    """Sample every missing (input, seed) of ``todo`` {name: (source, aligned, [seeds])}."""
    done = {}
    for name, (source, aligned, seeds) in todo.items():
        start = time.perf_counter()
        try:
            image = pil_to_tensor(load_image(aligned), device)
            result = sdedit(model, image, SDEditParams(params.t0, tuple(seeds), params.steps,
                                                       params.eta, params.batch),
                            device, dtype, progress)
        except (DrfhqError, OSError, ValueError, RuntimeError) as err:
            for seed in seeds:
                done[name, seed] = _row(name, source, seed, "failed",
                                        f"{type(err).__name__}: {err}")
            continue
        each = (time.perf_counter() - start) / len(seeds)
        for seed, sample in zip(seeds, result.samples[0]):
            path = sample_path(out_dir, name, seed)
            write_png_atomic(path, tensor_to_pil(sample[None])[0])
            done[name, seed] = _row(name, source, seed, "ok", seconds=f"{each:.2f}",
                                    start_timestep=str(result.start_timestep),
                                    denoising_steps=str(len(result.timesteps)))
    return done


def run_sdedit(ours: "InversionRun", checkpoint: str | Path | None = None,
               params: SDEditParams = SDEditParams(), device: torch.device | str = "cpu",
               dtype: torch.dtype = torch.float32, scheduler: str | None = None,
               prefer: str = "auto", progress: bool = True) -> SDEditRun:
    """SDEdit samples of the inputs of ``ours`` (an inversion run's folder and rows), from the
    diffusion folder ``checkpoint`` (None: the registry's ``ldm-celebahq-256`` when installed).
    A failing input or a checkpoint that cannot be read is a row (status + reason), never an
    exception; with no checkpoint every row is "not run". ``prefer`` chooses the LPIPS and
    identity networks that score each sample against its aligned input."""
    out_dir, device = Path(ours.out_dir), torch.device(device)
    aligned, failed = _inputs(ours)
    run = SDEditRun(out_dir, [], list(aligned), params)
    folder = diffusion.find_checkpoint(checkpoint)
    common = {"t0": str(params.t0), "trained": ""}
    with Manifest(out_dir / "sdedit.csv", FIELDS, key="item") as manifest:
        rows: dict[tuple[str, int], dict] = {}
        for name, (source, reason) in failed.items():
            for seed in params.seeds:
                rows[name, seed] = _row(name, source, seed, "failed", reason)
        model = None
        if folder is None:
            for name, (source, _) in aligned.items():
                for seed in params.seeds:
                    rows[name, seed] = _row(name, source, seed, "not run",
                                            diffusion.missing_reason(checkpoint))
        else:
            try:
                model = diffusion.load_diffusion(folder, device, dtype, scheduler)
            except (DrfhqError, OSError, RuntimeError) as err:
                for name, (source, _) in aligned.items():
                    for seed in params.seeds:
                        rows[name, seed] = _row(name, source, seed, "failed",
                                                f"{type(err).__name__}: {err}")
        if model is not None:
            run.model_label, run.notes = model.label, list(model.notes)
            run.networks.append(model.resolved)
            common.update(model=model.label, trained="true", sampler=_sampler(model, params),
                          num_train_timesteps=str(model.num_train_timesteps))
            todo = {}
            for name, (source, file) in aligned.items():
                for seed in params.seeds:
                    earlier = manifest.get(f"sdedit/{name}/seed{seed}")
                    same = earlier is not None and all(
                        earlier.get(k) == common[k] for k in ("model", "t0", "sampler"))
                    if sample_path(out_dir, name, seed).exists() and same \
                            and earlier["status"] == "ok":
                        rows[name, seed] = earlier
                    else:
                        todo.setdefault(name, (source, file, []))[2].append(seed)
            rows.update(_run_samples(model, todo, params, out_dir, device, dtype, progress))
            rows = _with_metrics(rows, aligned, out_dir, prefer, device, run)
        for key, row in rows.items():
            manifest.add({**row, **{k: v for k, v in common.items() if not row.get(k)}})
        names = [*aligned, *failed]
        run.rows = [{f: manifest.get(f"sdedit/{n}/seed{s}").get(f, "") for f in FIELDS}
                    for n in names for s in params.seeds]
    return run


def _with_metrics(rows: dict, aligned: dict, out_dir: Path, prefer: str, device,
                  run: SDEditRun) -> dict:
    """LPIPS and identity similarity of each new sample to its aligned input."""
    new = {k: r for k, r in rows.items() if r["status"] == "ok" and not r.get("lpips")}
    if not new:
        return rows
    from drfhq_lib.nets.identity import build_embedder
    from drfhq_lib.nets.perceptual import build_lpips

    lpips_net, embedder = build_lpips(prefer, device), build_embedder(prefer, device)
    run.networks += [*lpips_net.resolved, *embedder.resolved]
    for (name, seed), row in new.items():
        x = pil_to_tensor(load_image(aligned[name][1]), device)
        y = resize(pil_to_tensor(load_image(sample_path(out_dir, name, seed)), device),
                   x.shape[-1])
        rows[name, seed] = {**row, **result_metrics(y, x, lpips_net, embedder),
                            "output": str(sample_path(out_dir, name, seed))}
    return rows


def table_rows(run: SDEditRun, ours: "InversionRun") -> list[dict]:
    """The SDEdit rows and ours's, with one set of columns, for ``results/06_sdedit.csv``."""
    rows = [*run.rows, *({**r, "seed": ""} for r in ours.rows)]
    columns = list(dict.fromkeys([*FIELDS, *(k for r in rows for k in r)]))
    return [{"label": _label(r), **{c: r.get(c, "") for c in columns}} for r in rows]


def _label(row: dict) -> str:
    return f"SDEdit seed {row['seed']}" if row["method"] == "sdedit" else row["method"]


# ----------------------------------------------------------------------------- figure

def grid_cells(run: SDEditRun, ours: "InversionRun") -> tuple[list, list, list[str], list[str]]:
    """Rows of (aligned input, one SDEdit sample per seed, ours) for ``figures.image_grid``,
    None where a sample is missing (the reason in ``missing``)."""
    by_item = {r["item"]: r for r in [*run.rows, *ours.rows]}
    cells, missing = [], []
    for name in run.names:
        row_cells = [load_image(run.out_dir / "aligned" / f"{name}.png")]
        row_missing = [""]
        for seed in run.params.seeds:
            row = by_item.get(f"sdedit/{name}/seed{seed}", {})
            path = sample_path(run.out_dir, name, seed)
            ok = row.get("status") == "ok" and path.exists()
            row_cells.append(load_image(path) if ok else None)
            row_missing.append("" if ok else _short_reason(row))
        row = by_item.get(f"ours/{name}", {})
        path = run.out_dir / "ours" / f"{name}.png"
        ok = row.get("status") == "ok" and path.exists()
        row_cells.append(load_image(path) if ok else None)
        row_missing.append("" if ok else _short_reason(row))
        cells.append(row_cells)
        missing.append(row_missing)
    columns = ["input", *(f"SDEdit, seed {s}" for s in run.params.seeds), "ours"]
    return cells, missing, list(run.names), columns


def _short_reason(row: dict) -> str:
    if row.get("status") == "not run" and row.get("method") == "sdedit":
        return cell_text(f"needs the diffusion folder {diffusion.REGISTRY_NAME}/ (or "
                         "checkpoint=FOLDER)")
    return cell_text(row.get("status", "no row") + (": " + row["reason"][:60]
                                                    if row.get("reason") else ""))


def figure_note(run: SDEditRun, ours: "InversionRun", nets: Networks, extra: str = "") -> str:
    """Small print: what ours ran on, and which diffusion model SDEdit sampled (or none)."""
    from drfhq_lib.eval.inversion_figures import figure_note as ours_note

    ok = [r for r in run.rows if r["status"] == "ok"]
    if run.ran and ok:
        sdedit_part = (f"SDEdit: {run.model_label}, t0 = {run.params.t0}, "
                       f"{ok[0]['denoising_steps']} steps from timestep {ok[0]['start_timestep']}"
                       f" of {ok[0]['num_train_timesteps']}, eta {run.params.eta} ({PAPER_MODEL})")
    else:
        sdedit_part = f"SDEdit not run: no diffusion checkpoint ({PAPER_MODEL})"
    return ours_note(nets, [*ours.networks, *run.networks], "; ".join(
        p for p in [nets.note, sdedit_part, extra] if p))


def sdedit_figure(run: SDEditRun, ours: "InversionRun", nets: Networks,
                  title: str = "Fig. 8: SDEdit vs ours", extra_note: str = ""):
    """Fig. 8's grid, stamped when ours ran on untrained stand-ins; ``extra_note`` goes into
    the small print."""
    from drfhq_lib.eval.figures import UNTRAINED, image_grid

    cells, missing, row_labels, col_labels = grid_cells(run, ours)
    return image_grid(cells, row_labels, col_labels, title=title,
                      warning="" if nets.trained else UNTRAINED,
                      note=figure_note(run, ours, nets, extra_note), missing=missing)
