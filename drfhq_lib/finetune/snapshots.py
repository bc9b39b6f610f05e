"""Snapshots of a fine-tuning run: what is written to the run folder, and how a run resumes.

A snapshot after ``nimg`` real images is a pair of files, written in this order:

* ``network-<nimg>.safetensors`` -- G (G_rendering), G_ema (G_rendering_ema) and D, written by
  :func:`drfhq_lib.nets.save_network` (temporary file + rename); ``load_network`` reads it
  like any other network file;
* ``state-<nimg>.pt`` -- everything else a resumed run needs (optimiser states, augmentation
  p and ADA controller, pl_mean, step and image counts, RNG states, the configuration), written
  last, to a temporary file that is flushed to disk and then renamed.

A snapshot counts only once its state file is complete, so a run killed at any moment (Ctrl-C,
``kill -9``, power loss after the rename) resumes from the newest complete pair and loses at most
one snapshot interval. State files are read with ``torch.load(weights_only=True)``: tensors and
plain containers only, never code.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from drfhq_lib.errors import CheckpointFormatError
from drfhq_lib.nets import load_network, save_network
from drfhq_lib.nets.state_dict import load_weights_only

STATE_FORMAT = "drfhq-finetune-state/1"
_STATE_RE = re.compile(r"^state-(\d{9,})\.pt$")


def network_path(out: str | Path, nimg: int) -> Path:
    return Path(out) / f"network-{nimg:09d}.safetensors"


def state_path(out: str | Path, nimg: int) -> Path:
    return Path(out) / f"state-{nimg:09d}.pt"


def grid_path(out: str | Path, nimg: int) -> Path:
    return Path(out) / f"grid-{nimg:09d}.png"


def write_state(path: Path, state: dict) -> Path:
    """``torch.save`` to a temporary file beside ``path``, fsync, rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save({"format": STATE_FORMAT, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def save_snapshot(out: str | Path, nimg: int, nets: dict, state: dict,
                  extra: dict | None = None) -> tuple[Path, Path]:
    """Write the network file, then the state file (the snapshot exists once the latter does)."""
    net_file, state_file = network_path(out, nimg), state_path(out, nimg)
    save_network(net_file, nets, extra)
    write_state(state_file, {**state, "nimg": nimg, "network_file": net_file.name})
    return net_file, state_file


def read_state(path: str | Path) -> dict:
    """A state file, read safely; CheckpointFormatError when truncated or not ours."""
    path = Path(path)
    state = load_weights_only(path, "fine-tuning state file",
                              "resume from an earlier snapshot or start the run again")
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise CheckpointFormatError(f"{path}: not a drfhq fine-tuning state file")
    return state


@dataclass
class Snapshot:
    nimg: int
    network_file: Path
    state_file: Path
    state: dict
    nets: dict  # load_network's {'G', 'G_ema', 'D'}


def snapshot_nimgs(out: str | Path) -> list[int]:
    """Image counts of the state files in ``out``, newest first (complete or not)."""
    out = Path(out)
    if not out.is_dir():
        return []
    found = [int(m.group(1)) for p in out.iterdir() if (m := _STATE_RE.match(p.name))]
    return sorted(found, reverse=True)


def latest_snapshot(out: str | Path) -> Snapshot | None:
    """The newest snapshot whose state file loads and whose network file exists and loads.

    Broken newer snapshots (a run killed while writing, a truncated copy) are skipped with a
    warning naming them.
    """
    for nimg in snapshot_nimgs(out):
        state_file, net_file = state_path(out, nimg), network_path(out, nimg)
        try:
            state = read_state(state_file)
            if not net_file.is_file():
                raise CheckpointFormatError(f"{net_file}: missing")
            nets = load_network(net_file)
        except CheckpointFormatError as err:
            warnings.warn(f"skipping incomplete snapshot {nimg}: {err}", stacklevel=2)
            continue
        return Snapshot(nimg, net_file, state_file, state, nets)
    return None
