"""``drfhq encoder train`` as a file job (the training itself: :mod:`.encoder_training`).

    OUT/state.pt                 what a resumed run needs (encoder, Adam, step, log), atomic
    OUT/snapshot.safetensors     the encoder at the last snapshot (usable with --encoder)
    OUT/encoder.safetensors      the finished encoder, with encoder.safetensors.provenance.json
    OUT/log.jsonl                one line per logged interval (losses, kimg, seconds)

A snapshot is written every ``snapshot_kimg`` and at the end; rerunning the same command after
an interruption resumes from the last one (a larger ``--kimg`` continues a finished run, on the
same or another set of real inputs: a change of set is written into the log). With real inputs,
the saved encoders carry BatchNorm statistics measured on them (``EncoderTrainer.deployable``),
and ``--val-images`` scores each snapshot on held-out real inputs.
``export`` writes the fp16 copy that is committed (the mini world's encoder) with its
provenance file ``<label>.provenance.json`` beside it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from tqdm.auto import tqdm

from drfhq_lib.errors import DrfhqError
from drfhq_lib.files import atomic_path, sha256_file, write_json_atomic, write_text_atomic
from drfhq_lib.infer.encoder_training import EncoderTrainConfig, EncoderTrainer, \
    calibration_batches, real_image_loader, sample_targets
from drfhq_lib.nets.encoders import load_trained_encoder, save_trained_encoder
from drfhq_lib.nets.state_dict import load_weights_only
from drfhq_lib.nets.weights import Resolved

STATE, SNAPSHOT, FINAL, LOG = "state.pt", "snapshot.safetensors", "encoder.safetensors", "log.jsonl"
LOG_INTERVALS = 100  # log lines over a whole run


def generator_record(G, resolved: Resolved) -> dict:
    """What an encoder file says about the generator it was trained for."""
    return {"label": resolved.label, "name": resolved.name, "sha256": resolved.sha256,
            "path": str(resolved.path) if resolved.path else None,
            "resolution": G.img_resolution, "num_ws": G.num_ws, "w_dim": G.w_dim}


def _check_resumable(path: Path, state: dict, cfg: EncoderTrainConfig, generator: dict) -> None:
    saved = EncoderTrainConfig.from_dict(state.get("config", {})).as_dict()
    differ = sorted(k for k, v in cfg.as_dict().items() if k != "kimg" and saved.get(k) != v)
    if differ:
        raise DrfhqError(f"{path}: this run was started with other settings ({', '.join(differ)}"
                         f"); rerun with its own flags, or give a new --out")
    if state.get("generator_sha256") != generator.get("sha256"):
        raise DrfhqError(f"{path}: this run trains an encoder for another generator (sha256 "
                         f"{state.get('generator_sha256')}); give a new --out for "
                         f"{generator.get('label')}")


def inputs_record(paths: list) -> dict:
    """What a run records of a set of real inputs: their count and a digest of their names."""
    names = "\n".join(sorted(Path(p).name for p in paths))
    return {"count": len(paths), "names_sha256": hashlib.sha256(names.encode()).hexdigest()}


def _note_changed_inputs(trainer: EncoderTrainer, state: dict, current: dict) -> None:
    """A resumed run whose real inputs are not the ones it started with says so in its log
    (continuing on a larger set is allowed; hiding it would not be)."""
    previous = state.get("real_inputs")
    if previous == current:
        return
    trainer.log.append({"step": trainer.step_index, "kimg": round(trainer.kimg, 3),
                        "event": "real inputs changed", "real_inputs": current,
                        "previous_real_inputs": previous})
    was = previous["count"] if previous else "an unrecorded number"
    print(f"encoder train: resuming at {trainer.kimg:g} kimg with {current['count']} real "
          f"inputs (the run had {was} until now); noted in the log", flush=True)


def batchnorm_source(trainer: EncoderTrainer) -> str:
    """Where the saved encoder's BatchNorm statistics come from (:meth:`deployable`)."""
    if not trainer.calibrates:
        return "training batches"
    n = sum(map(len, calibration_batches(trainer.real_count, trainer.cfg.real_batch)))
    return f"{n} of the {trainer.real_count} real inputs"


def _snapshot(trainer: EncoderTrainer, deployed, extra: dict, out: Path, generator: dict,
              real_inputs: dict) -> None:
    save_trained_encoder(out / SNAPSHOT, deployed, trainer.latent_avg, generator, extra)
    with atomic_path(out / STATE) as tmp:
        torch.save({**trainer.state(), "generator_sha256": generator.get("sha256"),
                    "real_inputs": real_inputs}, tmp)
    write_text_atomic(out / LOG, "".join(json.dumps(r) + "\n" for r in trainer.log))


def summary(trainer: EncoderTrainer, val: dict) -> dict:
    """kimg, steps, seconds, the BatchNorm statistics' source and the validation losses."""
    return {"kimg": round(trainer.kimg, 3), "steps": trainer.step_index,
            "train_seconds": round(trainer.seconds, 1),
            "batchnorm_statistics": batchnorm_source(trainer), **val}


def train_encoder(G, out_dir, cfg: EncoderTrainConfig, generator: dict,
                  networks: list[Resolved], *, lpips=None, real_paths=(), val_paths=(),
                  device: torch.device | str = "cpu", snapshot_kimg: float = 2.0,
                  progress: bool = True, command: str = "") -> Path:
    """Train (or resume) an encoder for ``G`` in ``out_dir``; returns ``OUT/encoder.safetensors``.

    ``generator``: :func:`generator_record`; ``networks``: the Resolved networks for the
    provenance (the generator's, LPIPS's when used); ``real_paths``: aligned real inputs;
    ``val_paths``: held-out aligned real inputs, for validation only."""
    from drfhq_lib.provenance import write_sidecar

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    real_paths, val_paths = list(real_paths), list(val_paths)
    loader = real_image_loader(real_paths, G.img_resolution, device) if real_paths else None
    val_images = (real_image_loader(val_paths, G.img_resolution)(list(range(len(val_paths))))
                  if val_paths else None)
    trainer = EncoderTrainer(G, cfg, torch.device(device), lpips, loader, len(real_paths),
                             val_images)
    real_inputs = inputs_record(real_paths)
    if (out / STATE).exists():
        state = load_weights_only(out / STATE, "encoder training state",
                                  f"delete {out / STATE} to start the run again")
        _check_resumable(out / STATE, state, cfg, generator)
        trainer.load_state(state)
        _note_changed_inputs(trainer, state, real_inputs)
    log_every = max(1, cfg.total_steps // LOG_INTERVALS)
    next_snapshot = (int(trainer.kimg / snapshot_kimg) + 1) * snapshot_kimg
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}  # per loss: the real inputs' losses run every real_every steps
    last = None  # (the encoder as saved, its summary) at the latest snapshot of this call
    with tqdm(total=cfg.total_steps * cfg.batch, initial=trainer.images_seen, unit="img",
              desc="encoder", disable=not progress) as bar:
        while not trainer.done:
            losses = trainer.step()
            for name, value in losses.items():
                sums[name] = sums.get(name, 0.0) + value
                counts[name] = counts.get(name, 0) + 1
            bar.update(cfg.batch)
            bar.set_postfix({k: f"{v:.4f}" for k, v in losses.items()})
            if trainer.step_index % log_every == 0 or trainer.done:
                trainer.log.append({"step": trainer.step_index, "kimg": round(trainer.kimg, 3),
                                    "seconds": round(trainer.seconds, 1),
                                    **{k: round(v / counts[k], 5) for k, v in sums.items()}})
                sums, counts = {}, {}
            if trainer.kimg >= next_snapshot - 1e-9 or trainer.done:
                deployed = trainer.deployable()
                val = trainer.evaluate(encoder=deployed)
                if trainer.log and trainer.log[-1]["step"] == trainer.step_index:
                    trainer.log[-1].update(val)
                else:
                    trainer.log.append({"step": trainer.step_index,
                                        "kimg": round(trainer.kimg, 3), **val})
                last = deployed, summary(trainer, val)
                _snapshot(trainer, *last, out, generator, real_inputs)
                next_snapshot += snapshot_kimg
    if last is None:  # resumed a finished run: nothing left to train
        deployed = trainer.deployable()
        last = deployed, summary(trainer, trainer.evaluate(encoder=deployed))
        if not (out / SNAPSHOT).exists():
            _snapshot(trainer, *last, out, generator, real_inputs)
    deployed, result = last
    final = out / FINAL
    save_trained_encoder(final, deployed, trainer.latent_avg, generator,
                         {**result, "config": cfg.as_dict(), "command": command})
    write_sidecar(final, networks, cfg.as_dict(),
                  {"command": command, "generator": generator, "real_inputs": len(real_paths),
                   "validation_inputs": len(val_paths),
                   **result, "log": trainer.log})
    return final


@torch.no_grad()
def fp16_error(G, encoder_file: Path, half_file: Path, device="cpu") -> float:
    """Max |W+(fp32) - W+(fp16)| on the validation samples, over the std of w's coordinates."""
    from drfhq_lib.infer.encoder_training import EVAL_SEED, LATENT_EVAL_SAMPLES

    full, half = load_trained_encoder(encoder_file, device), load_trained_encoder(half_file, device)
    images, ws = sample_targets(G, LATENT_EVAL_SAMPLES, torch.Generator().manual_seed(EVAL_SEED),
                                0.0, torch.device(device))
    std = (ws[:, 0] - ws[:, 0].mean(0)).square().mean().sqrt()
    return float((full.ws(images) - half.ws(images)).abs().max() / std)


def export(G, encoder_file, dest, label: str, command: str, device="cpu") -> Path:
    """The fp16 copy of a finished encoder at ``dest`` (a ``.safetensors`` file, or a folder:
    ``<label>.safetensors`` in it) and ``<label>.provenance.json`` beside it."""
    encoder_file, dest = Path(encoder_file), Path(dest)
    if dest.suffix != ".safetensors":
        dest = dest / f"{label}.safetensors"
    trained = load_trained_encoder(encoder_file)
    extra = {**trained.extra, "label": label}
    save_trained_encoder(dest, trained.encoder, trained.latent_avg, trained.generator, extra,
                         half=True)
    sidecar = encoder_file.with_name(encoder_file.name + ".provenance.json")
    record = json.loads(sidecar.read_text()) if sidecar.exists() else {}
    write_json_atomic(dest.with_name(f"{label}.provenance.json"), {
        **record, "artifact": dest.name, "label": label,
        "network": f"W+ encoder ({trained.kind}) for {trained.generator.get('label')}",
        "sha256": sha256_file(dest), "bytes": os.path.getsize(dest), "export_command": command,
        "fp16_max_ws_error_over_w_std": fp16_error(G, encoder_file, dest, device),
        "exported_from": str(encoder_file)})
    return dest
