"""Provenance sidecars: what produced a figure or table.

Every artefact ``X`` (``figures/fig9.png``, ``results/tab1.csv``) gets ``X.provenance.json``
beside it, naming the networks (official or substitute, with their sha256), the parameters,
the git commit and the library versions. Notebooks and CLI commands call ``write_sidecar``
right after writing the artefact.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
from pathlib import Path
from typing import Iterable, Mapping

from drfhq_lib import __version__
from drfhq_lib.files import write_json_atomic
from drfhq_lib.nets.weights import Resolved

SUFFIX = ".provenance.json"


def git_commit(cwd: str | os.PathLike | None = None) -> str | None:
    """The commit of the checkout that produced an artefact, with ``-dirty`` when edited."""
    cwd = Path(cwd or Path(__file__).resolve().parent)
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=cwd, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return sha + ("-dirty" if dirty else "")


def sidecar_path(artifact: str | os.PathLike) -> Path:
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + SUFFIX)


def _versions() -> dict:
    import torch

    return {"drfhq": __version__, "torch": torch.__version__, "python": platform.python_version()}


def provenance(networks: Iterable[Resolved], params: Mapping, extra: Mapping | None = None) -> dict:
    networks = list(networks)
    return {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "versions": _versions(),
        "networks": [n.as_record() for n in networks],
        "substitutes_used": sorted(n.label for n in networks if not n.is_official),
        "params": dict(params),
        **(dict(extra) if extra else {}),
    }


def write_sidecar(artifact: str | os.PathLike, networks: Iterable[Resolved] = (),
                  params: Mapping | None = None, extra: Mapping | None = None) -> Path:
    """Write ``<artifact>.provenance.json``; the artefact itself must already exist."""
    artifact = Path(artifact)
    if not artifact.exists():
        raise FileNotFoundError(f"{artifact}: write the artefact before its provenance sidecar")
    record = {"artifact": artifact.name, **provenance(networks, params or {}, extra)}
    return write_json_atomic(sidecar_path(artifact), record)


def label_for_figure(networks: Iterable[Resolved], world_note: str = "") -> str:
    """A one-line caption for stamping on figures: ``world_note`` (what the networks are when
    they are not the paper's, e.g. the mini world's WORLD_NOTE) and the substitutes among
    ``networks`` ('' if neither)."""
    subs = sorted({n.label for n in networks if not n.is_official})
    parts = [world_note, ("offline substitutes: " + ", ".join(subs)) if subs else ""]
    return "; ".join(p for p in parts if p)
