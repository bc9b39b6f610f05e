"""Named generator variants: the rows and columns of the generator comparisons.

Fig. 9 / Tab. 1 / Tab. 2 (Sec. 5.2.3) compare StyleGAN2-FFHQ (G_real), StyleGAN-NADA, AgileGAN
and ours (G_rendering) on the same latents; Fig. 10 (Sec. 5.3.1) compares four fine-tunings
with L_sketch / L_color switched on and off; Fig. 13 / Tab. 3 (Sec. 5.3.4) two G_rendering
fine-tuned on two datasets, used to enhance the same held-out renders.

A :class:`Variant` is one named generator and how it was obtained:

* a network file (official pickle, rosinality ``.pt`` such as StyleGAN-NADA's, or ours);
* a fine-tuning run folder (its newest complete snapshot, once the run reached its kimg);
* a run trained on request (``train=True``) with :class:`~drfhq_lib.finetune.Trainer`, which
  resumes a stopped run and does nothing for a finished one;
* or "not run", with the reason and what to give to run it -- never a stand-in image.

``trained`` is False whenever the generator comes from an untrained stand-in (the tiny CI source
or a run fine-tuned from it): figures must say so and tables carry the flag.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn

from drfhq_lib import finetune
from drfhq_lib.eval import metrics
from drfhq_lib.data.align import align_face
from drfhq_lib.infer.enhance import CompositeParams, Networks, generator_from_file, enhance_files
from drfhq_lib.errors import CheckpointFormatError, DrfhqError
from drfhq_lib.files import sha256_file
from drfhq_lib.nets.identity import FaceEmbedder, IdentityResult
from drfhq_lib.data.images import pil_to_tensor
from drfhq_lib.nets.perceptual import LPIPSVGG16, resize
from drfhq_lib.infer.projection import ProjectionParams, load_latent, render
from drfhq_lib.nets.weights import Resolved

OK, NOT_RUN = "ok", "not run"

#: Fig. 10: variant name -> the loss switches of its fine-tuning (Sec. 5.3.1).
LOSS_ABLATION: dict[str, dict[str, bool]] = {
    "baseline": {"sketch": False, "color": False},
    "no_sketch": {"sketch": False, "color": True},
    "no_color": {"sketch": True, "color": False},
    "full": {"sketch": True, "color": True},
}
LOSS_ABLATION_LABELS = {"baseline": "baseline",
                        "no_sketch": "w/o L_sketch", "no_color": "w/o L_color",
                        "full": "full (ours)"}

#: Tab. 3's L2, as computed by metrics.pair_table.
L2_DEFINITION = ("L2 = mean over pixels and RGB channels of the squared difference of the two "
                 "images in [-1, 1] (4x the mean squared error of images in [0, 1])")


@dataclass
class Variant:
    """One named generator, or the reason it is missing."""

    name: str
    G: nn.Module | None = None
    status: str = NOT_RUN
    reason: str = ""
    origin: str = ""  # the file or run folder it was asked from
    network_file: str = ""  # the file actually loaded
    kimg: float | None = None  # fine-tuning length, for run folders
    trained: bool = False  # False: an untrained stand-in, or fine-tuned from one
    resolved: list[Resolved] = field(default_factory=list)

    @property
    def ran(self) -> bool:
        return self.G is not None

    def as_row(self) -> dict:
        return {"generator": self.name, "status": self.status, "reason": self.reason,
                "trained": self.trained, "kimg": "" if self.kimg is None else self.kimg,
                "network_file": self.network_file}

    def as_record(self) -> dict:
        """For provenance: the row plus the loaded file's sha256."""
        digest = sha256_file(self.network_file) if self.network_file else None
        return {**self.as_row(), "origin": self.origin, "sha256": digest}


def not_run(name: str, reason: str, origin: str | Path | None = None) -> Variant:
    return Variant(name, reason=reason, origin=str(origin or ""))


def _file_is_untrained(path: Path) -> bool:
    """A network file written by make_tiny_source, or a snapshot of a run fine-tuned from one."""
    from drfhq_lib.nets import load_extra

    try:
        extra = load_extra(path)
    except DrfhqError:
        return False
    if extra.get("untrained"):
        return True
    source = extra.get("drfhq_finetune", {}).get("config", {}).get("source")
    if source is None:
        return False
    # Why conservative: a run whose source file is gone cannot show it was trained.
    return not Path(source).is_file() or finetune.source_is_untrained(source)


def source_variant(source: str | Path | None, device: torch.device | str = "cpu",
                   name: str = "StyleGAN2-FFHQ") -> Variant:
    """G_real: the G_ema of ``source``, or of the registry's official FFHQ network when None
    (MissingWeightsError says how to get it: every comparison needs G_real)."""
    from drfhq_lib.nets.weights import official_path

    path = Path(source).expanduser() if source else official_path("stylegan2-ffhq")
    G = generator_from_file(path, device)
    return Variant(name, G, OK, origin=str(path), network_file=str(path),
                   trained=not _file_is_untrained(path), resolved=[finetune.source_record(path)])


def _run_networks(network_file: Path) -> list[Resolved]:
    """The external networks a fine-tuning run used, from its network file's sidecar."""
    import json

    from drfhq_lib.provenance import sidecar_path

    sidecar = sidecar_path(network_file)
    if not sidecar.is_file():
        return []
    records = json.loads(sidecar.read_text()).get("networks", [])
    return [Resolved(r["name"], r["kind"], r["label"], Path(r["path"]) if r.get("path") else None,
                     r.get("sha256")) for r in records]


def _loaded(name: str, network_file: Path, origin: Path, device, kimg: float | None) -> Variant:
    G = generator_from_file(network_file, device)
    return Variant(name, G, OK, origin=str(origin), network_file=str(network_file), kimg=kimg,
                   trained=not _file_is_untrained(network_file),
                   resolved=_run_networks(network_file))


def networks_used(variants: Iterable[Variant], *more: Resolved) -> list[Resolved]:
    """Every external network behind the variants (and ``more``), each once, for provenance."""
    seen, out = set(), []
    for r in [r for v in variants for r in v.resolved] + list(more):
        key = (r.name, r.kind, r.label, str(r.path))
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def run_folder_variant(name: str, folder: str | Path, device: torch.device | str = "cpu",
                       kimg: float | None = None, expect: Mapping | None = None) -> Variant:
    """The newest snapshot of a fine-tuning run, once it has reached ``kimg`` (default: the
    kimg the run was started with); otherwise "not run" with what to do. ``expect``: settings
    the run must have been made with (Fig. 10's loss switches), else "not run"."""
    folder = Path(folder).expanduser()
    snapshot = finetune.latest_snapshot(folder) if folder.is_dir() else None
    if snapshot is None:
        return not_run(name, f"{folder}: no fine-tuning snapshot; set train=True to fine-tune "
                             f"it there (a rerun resumes), or give a network file", folder)
    stored = snapshot.state["config"]
    wrong = {k: stored.get(k) for k, v in (expect or {}).items() if stored.get(k) != v}
    if wrong:
        return not_run(name, f"{folder}: trained with {wrong}, this variant needs "
                             f"{ {k: expect[k] for k in wrong} }", folder)
    target = kimg if kimg is not None else stored["kimg"]
    if snapshot.nimg < target * 1000:
        return not_run(name, f"{folder}: stopped at {snapshot.nimg / 1000:g} of {target:g} "
                             f"kimg; set train=True to finish it (it resumes)", folder)
    return _loaded(name, snapshot.network_file, folder, device, snapshot.nimg / 1000)


def file_variant(name: str, path: str | Path | None, device: torch.device | str = "cpu",
                 needs: str = "") -> Variant:
    """A generator from a network file or a run folder; "not run" when none is given, it is
    missing or it cannot be read. ``needs`` tells the user what file would run it."""
    hint = f" ({needs})" if needs else ""
    if path is None or str(path) == "":
        return not_run(name, f"no generator file given{hint}")
    path = Path(path).expanduser()
    if path.is_dir():
        return run_folder_variant(name, path, device)
    if not path.is_file():
        return not_run(name, f"{path}: not found{hint}", path)
    try:
        return _loaded(name, path, path, device, None)
    except (CheckpointFormatError, DrfhqError) as err:
        return not_run(name, f"unreadable: {err}", path)


def finetuned_variant(name: str, config: finetune.FinetuneConfig, train: bool = False,
                      device: torch.device | str = "cpu", networks: Mapping | None = None,
                      expect: Mapping | None = None, log=print) -> Variant:
    """The run in ``config.out``. With ``train``: fine-tuned (or resumed) to ``config.kimg``
    first; a folder holding a run with other settings is never reused, it is "not run" with the
    conflicting settings named. Without: the run as it is, if it is finished (see
    :func:`run_folder_variant`). ``networks``: ``sketch_net`` / ``lpips_net`` / ``embedder``
    shared between runs."""
    from drfhq_lib.finetune.trainer import prepare

    if not train:
        return run_folder_variant(name, config.out, device, None, expect)
    try:
        cfg, found = prepare(config)
    except finetune.ConfigError as err:
        return not_run(name, f"{config.out}: {err}", config.out)
    if found is None or found.nimg < cfg.kimg * 1000:
        finetune.Trainer(config, log=log, **dict(networks or {})).run()
    return run_folder_variant(name, cfg.out, device, cfg.kimg, expect)


def generator_variant(name: str, path: str | Path | None,
                      config: finetune.FinetuneConfig | None = None, train: bool = False,
                      device: torch.device | str = "cpu", networks: Mapping | None = None,
                      needs: str = "", expect: Mapping | None = None) -> Variant:
    """What a notebook parameter names: a network file is loaded as is; a run folder is
    loaded, or fine-tuned there with ``config`` when ``train`` (``config.out`` := the folder)."""
    if path is not None and Path(path).expanduser().is_file():
        return file_variant(name, path, device, needs)
    if config is not None and path is not None:
        config = replace(config, out=str(Path(path).expanduser()))
        return finetuned_variant(name, config, train, device, networks, expect)
    return file_variant(name, path, device, needs)


def loss_ablation_configs(base: finetune.FinetuneConfig, folders: Mapping[str, str | Path]
                          ) -> dict[str, finetune.FinetuneConfig]:
    """Fig. 10's four runs: ``base`` with the loss switches of :data:`LOSS_ABLATION`, each in
    its own folder (``folders[name]``)."""
    return {name: replace(base, out=str(folders[name]), **switches)
            for name, switches in LOSS_ABLATION.items()}


def same_space_problem(reference: nn.Module, G: nn.Module) -> str:
    """Why ``G`` cannot render ``reference``'s W+ ('' when it can)."""
    if (G.num_ws, G.w_dim) != (reference.num_ws, reference.w_dim):
        return (f"its W+ is [{G.num_ws}, {G.w_dim}], G_real's [{reference.num_ws}, "
                f"{reference.w_dim}]: not the same latent space")
    return ""


def in_same_space(reference: Variant, variants: Iterable[Variant]) -> list[Variant]:
    """The variants, with any that cannot share G_real's W+ turned into "not run"."""
    out = []
    for v in variants:
        problem = same_space_problem(reference.G, v.G) if v.ran else ""
        out.append(not_run(v.name, f"{v.network_file}: {problem}", v.origin) if problem else v)
    return out


def fixed_ws(reference: nn.Module, count: int, seed: int = 0,
             device: torch.device | str = "cpu", truncation_psi: float = 1.0) -> torch.Tensor:
    """W+ [count, num_ws, w_dim] of seeded z through the reference generator's mapping."""
    z = torch.randn(count, reference.z_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return reference.mapping(z.to(device), None, truncation_psi=truncation_psi)


def render_same_latents(reference: Variant, variants: Sequence[Variant], count: int,
                        seed: int = 0, device: torch.device | str = "cpu",
                        truncation_psi: float = 1.0) -> dict[str, torch.Tensor | None]:
    """Name -> images [count, 3, R, R] in [-1, 1] (CPU) of the same W+ through each variant's
    synthesis network (constant noise); None for a variant that did not run."""
    ws = fixed_ws(reference.G, count, seed, device, truncation_psi)
    return {v.name: render(v.G, ws).cpu() if v.ran else None for v in variants}


def _missing_cells(reason: str, count: int, width: int = 30) -> list[str]:
    """The reason of a variant that did not run, wrapped, in its first cell only."""
    import textwrap

    return [textwrap.fill(reason, width)] + [""] * (count - 1)


def comparison_figure(variants: Sequence[Variant], images: Mapping[str, torch.Tensor | None],
                      labels: Mapping[str, str] | None = None, generators_as: str = "rows",
                      **decoration):
    """An image grid of the same latents through each variant (Fig. 9: one row per generator;
    Fig. 10: ``generators_as="columns"``). A variant that did not run is a row or column of
    "not run" cells, the first one with its reason. ``decoration``: title, warning, note."""
    from drfhq_lib.eval.figures import image_grid

    labels = labels or {}
    count = max((len(x) for x in images.values() if x is not None), default=1)
    names = [labels.get(v.name, v.name) for v in variants]
    per_variant = [list(images[v.name]) if images.get(v.name) is not None else [None] * count
                   for v in variants]
    reasons = [_missing_cells(v.reason, count) for v in variants]
    latents = [f"latent {i}" for i in range(count)]
    if generators_as == "rows":
        return image_grid(per_variant, row_labels=names, col_labels=latents, missing=reasons,
                          **decoration)
    rows = [list(r) for r in zip(*per_variant)]
    return image_grid(rows, row_labels=latents, col_labels=names,
                      missing=[list(r) for r in zip(*reasons)], **decoration)


# ----------------------------------------------------------------------------- metrics

def distances(variant: Variant, datasets: Mapping[str, str | Path | None], num: int,
              batch: int = 32, device: torch.device | str = "cpu", prefer: str = "auto",
              seed: int = 2020, truncation_psi: float = 1.0) -> dict:
    """Tab. 1 for one generator: its distance to each dataset (FID with the official
    Inception, else FD-dlib; the ``distance_metric`` column says which). A distance that
    cannot be computed is NaN with the reason in ``distance_note``; never a made-up value."""
    row, notes, names = {}, [], set()
    for key, path in datasets.items():
        row[f"distance_{key}"], row[f"n_samples_{key}"] = math.nan, 0
        if not variant.ran:
            continue
        if not path:
            notes.append(f"{key}: no dataset given")
            continue
        source = metrics.GeneratorSource.from_stylegan(variant.G, truncation_psi)
        try:
            result = metrics.generator_distance(source, Path(path).expanduser(), num, batch,
                                                device, prefer, seed)
        except DrfhqError as err:  # e.g. FD-dlib found no faces: say so, never a number
            row[f"n_samples_{key}"] = num
            notes.append(f"{key}: {err}")
            continue
        row[f"distance_{key}"], row[f"n_samples_{key}"] = result.value, result.n_a
        names.add(result.metric)
    return {**row, "distance_metric": "/".join(sorted(names)) or _distance_name(prefer),
            "distance_note": "; ".join(notes)}


def _distance_name(prefer: str) -> str:
    """The metric ``generator_distance`` would use, for rows where none was computed."""
    from drfhq_lib.nets import weights

    try:
        return "FID" if weights.resolve("inception-fid", prefer).is_official else "FD-dlib"
    except DrfhqError:
        return "FID"


def paired_metrics(reference: Variant, variant: Variant, num: int, batch: int = 16,
                   seed: int = 0, device: torch.device | str = "cpu",
                   embedder: FaceEmbedder | None = None, lpips_net: LPIPSVGG16 | None = None,
                   truncation_psi: float = 1.0) -> dict:
    """Identity similarity (Tab. 2) and/or LPIPS and L2 (Fig. 10's table) between G_real(w)
    and G_variant(w) over ``num`` seeded latents, streamed batch by batch (2k latents at 1024
    px do not fit in memory at once). Rows without a face count in ``n_no_face``."""
    identity = IdentityResult(embedder.label, [], list(embedder.resolved)) if embedder else None
    pairs = metrics.PairResult(lpips_net.label, resolved=list(lpips_net.resolved)) \
        if lpips_net is not None else None
    if variant.ran:
        for a, b in metrics.paired_samples(reference.G, variant.G, num, batch, seed, device,
                                           truncation_psi):
            if identity is not None:
                identity = identity.merged(metrics.identity_over([(a, b)], embedder))
            if pairs is not None:
                batch_result = metrics.pair_table([(a, b)], lpips_net)
                pairs.lpips += batch_result.lpips
                pairs.l2 += batch_result.l2
    row = {}
    if identity is not None:
        row.update(identity.as_row() if identity.values else
                   {"identity_similarity": math.nan, "n_pairs": 0, "n_no_face": 0,
                    "embedder": identity.label})
    if pairs is not None:
        row.update(pairs.as_row() if pairs.n_pairs else
                   {"lpips": math.nan, "l2": math.nan, "n_pairs": 0,
                    "lpips_variant": pairs.label})
    return row


def comparison_row(reference: Variant, variant: Variant, num_pairs: int,
                   datasets: Mapping[str, str | Path | None] | None = None, num_fid: int = 0,
                   batch: int = 16, seed: int = 0, device: torch.device | str = "cpu",
                   prefer: str = "auto", embedder: FaceEmbedder | None = None,
                   lpips_net: LPIPSVGG16 | None = None, truncation_psi: float = 1.0) -> dict:
    """One table row with the same columns for every variant: what it is, its distance to
    each of ``datasets`` (Tab. 1), and its identity similarity / LPIPS / L2 to G_real over
    ``num_pairs`` latents (Tab. 2, Fig. 10). The reference itself gets blank pair columns."""
    # Why both: samples of any variant are drawn through G_real's mapping and compared with it.
    row = {**variant.as_row(), "trained": variant.trained and reference.trained}
    if datasets:
        row.update(distances(variant, datasets, num_fid, batch, device, prefer, seed + 2020,
                             truncation_psi))
    measured = variant if variant is not reference else not_run(variant.name, "reference")
    row.update(paired_metrics(reference, measured, num_pairs, batch, seed, device, embedder,
                              lpips_net, truncation_psi))
    if variant is reference:
        row["reason"] = "reference (G_real): pair columns compare the others with it"
    return finite_or_blank(row)


# ----------------------------------------------------------------------------- Fig. 13 / Tab. 3

def networks_of(real: Variant, rendering: Variant) -> Networks:
    """The enhance pipeline's two generators, labelled; untrained when either is."""
    if not (real.ran and rendering.ran):
        raise DrfhqError(f"{rendering.name}: cannot enhance without both generators "
                         f"({rendering.reason or real.reason})")
    return Networks(real.G, rendering.G, real.name, rendering.name,
                    real.trained and rendering.trained, list(real.resolved))


def enhance_with(real: Variant, rendering: Variant, inputs: Sequence[Path], out_dir: Path,
                 params: ProjectionParams = ProjectionParams(), batch: int = 8,
                 size: int | None = None, prefer: str = "auto",
                 device: torch.device | str = "cpu", progress: bool = True) -> dict[str, dict]:
    """Enhance ``inputs`` with G_real and this G_rendering into ``out_dir`` (resumable: a rerun
    skips inputs whose output exists); the manifest rows by input, {} when it did not run."""
    if not rendering.ran:
        return {}
    return enhance_files(list(inputs), out_dir, networks_of(real, rendering), params, batch,
                         size, prefer, CompositeParams(), device, progress=progress)


def enhanced_inputs(rows_by_variant: Mapping[str, Mapping[str, dict]], out_dirs: Mapping[str, Path]
                    ) -> list[Path]:
    """Inputs that every variant enhanced (status ok or exists, latent file present), in input
    order: Tab. 3 compares the datasets on the same pairs."""
    done = None
    for name, rows in rows_by_variant.items():
        ok = [Path(i) for i, r in rows.items() if r["status"] in ("ok", "exists")
              and (Path(out_dirs[name]) / "latents" / f"{Path(i).stem}.npz").is_file()]
        done = ok if done is None else [p for p in done if p in ok]
    return done or []


def projected_face(path: Path, resolution: int, size: int | None = None) -> torch.Tensor:
    """The aligned face [1, 3, R, R] exactly as the enhance pipeline projected it (aligned at
    ``size``, default R, then resized to the generator's resolution R)."""
    return resize(pil_to_tensor(align_face(path, size=size or resolution).image), resolution)


def result_pairs(inputs: Sequence[Path], out_dirs: Mapping[str, Path], G_real: nn.Module,
                 size: int | None = None, device: torch.device | str = "cpu"
                 ) -> dict[str, list[tuple[torch.Tensor, torch.Tensor]]]:
    """Name -> [(aligned input face, G_real result)] for each enhanced input, [1, 3, R, R] in
    [-1, 1] on the CPU: the result is the input's W+ (``out_dir/latents/<stem>.npz``)
    rendered by G_real. Each input is aligned once for all variants."""
    pairs: dict[str, list] = {name: [] for name in out_dirs}
    for path in map(Path, inputs):
        face = projected_face(path, G_real.img_resolution, size)
        for name, out_dir in out_dirs.items():
            ws = load_latent(Path(out_dir) / "latents" / f"{path.stem}.npz")["ws"][None]
            pairs[name].append((face, render(G_real, ws.to(device)).cpu()))
    return pairs


def pair_row(pairs: Sequence[tuple[torch.Tensor, torch.Tensor]], lpips_net: LPIPSVGG16) -> dict:
    """Tab. 3 for one variant: mean LPIPS and L2 (:data:`L2_DEFINITION`) over the pairs, and
    the same L2 in [0, 1] units; NaN without pairs."""
    if not pairs:
        return {"lpips": math.nan, "l2": math.nan, "mse_01": math.nan, "n_pairs": 0,
                "lpips_variant": lpips_net.label}
    row = metrics.pair_table(pairs, lpips_net).as_row()
    return {**row, "mse_01": row["l2"] / 4.0}


def dataset_rows(real: Variant, renderings: Sequence[Variant],
                 pairs: Mapping[str, Sequence[tuple[torch.Tensor, torch.Tensor]]],
                 lpips_net: LPIPSVGG16) -> list[dict]:
    """Tab. 3: one row per G_rendering (named after its dataset) with its pair metrics."""
    return [finite_or_blank({**r.as_row(), "trained": r.trained and real.trained,
                             **pair_row(pairs.get(r.name, []), lpips_net),
                             "l2_definition": L2_DEFINITION}) for r in renderings]


def enhancement_figure(inputs: Sequence[Path], renderings: Sequence[Variant],
                       pairs: Mapping[str, Sequence[tuple[torch.Tensor, torch.Tensor]]],
                       **decoration):
    """Fig. 13: one row per input: its aligned face, then each G_rendering's G_real result;
    "not run" cells (with the reason) for a G_rendering that did not run."""
    from drfhq_lib.eval.figures import image_grid

    def result(r: Variant, i: int, which: int):
        return pairs[r.name][i][which][0] if pairs.get(r.name) else None

    ran = [r for r in renderings if pairs.get(r.name)]
    rows = [[result(ran[0], i, 0) if ran else None] + [result(r, i, 1) for r in renderings]
            for i in range(len(inputs))] or [[None] * (1 + len(renderings))]
    missing = [["no input enhanced by every G_rendering" if not inputs else ""]
               + [r.reason for r in renderings] for _ in rows]
    return image_grid(rows, row_labels=[Path(p).stem for p in inputs],
                      col_labels=["input (aligned)"] + [f"{r.name}-based" for r in renderings],
                      missing=missing, **decoration)


def finite_or_blank(row: Mapping) -> dict:
    """NaN -> '' for CSV cells, so a missing value is never read as a number."""
    return {k: ("" if isinstance(v, float) and not np.isfinite(v) else v) for k, v in row.items()}
