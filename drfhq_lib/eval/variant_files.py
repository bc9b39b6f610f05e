"""Generator variants from and to files.

* In: a network file (official pickle, rosinality ``.pt`` such as StyleGAN-NADA's, or ours), a
  fine-tuning run folder (its newest complete snapshot, once the run reached its kimg), or a run
  trained on request (``train=True``), else "not run" with the reason;
* out: Fig. 13 / Tab. 3's enhance job (``OUT/<variant>``, resumable) and the result pairs read
  back from its latent files.

The :class:`~drfhq_lib.eval.variants.Variant` and what is computed with it are in
:mod:`drfhq_lib.eval.variants`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Mapping, Sequence

import torch
import torch.nn as nn

from drfhq_lib import finetune
from drfhq_lib.data.detect import align_detected
from drfhq_lib.data.images import pil_to_tensor
from drfhq_lib.errors import CheckpointFormatError, DrfhqError
from drfhq_lib.eval.variants import OK, Variant, networks_of, not_run
from drfhq_lib.files import sha256_file
from drfhq_lib.infer.enhance import CompositeParams, enhance_files, generator_from_file
from drfhq_lib.infer.projection import ProjectionParams, load_latent, render
from drfhq_lib.nets.perceptual import resize
from drfhq_lib.nets.weights import Resolved


def variant_record(variant: Variant) -> dict:
    """For provenance: the variant's row plus the loaded file's sha256."""
    digest = sha256_file(variant.network_file) if variant.network_file else None
    return {**variant.as_row(), "origin": variant.origin, "sha256": digest}


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
    return resize(pil_to_tensor(align_detected(path, size=size or resolution).image), resolution)


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
