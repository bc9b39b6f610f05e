"""The files a latent of the explorer and of Fig. 2 comes from: the ``.npz`` W+ that
``projection.save_latent`` writes (``drfhq enhance`` -> ``OUT/latents``), listed, read and
checked against a generator, and the rendered input image each belongs to (found, aligned)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import torch

from drfhq_lib.errors import DrfhqError
from drfhq_lib.infer.projection import load_latent


def list_latents(folder: str | Path | None) -> list[Path]:
    """The ``.npz`` latents in ``folder`` (e.g. an enhance run's ``latents``), sorted."""
    if not folder or not Path(folder).expanduser().is_dir():
        return []
    return sorted(Path(folder).expanduser().glob("*.npz"))


def load_projected(path: str | Path, G) -> torch.Tensor:
    """A projected portrait's W+ ``[1, num_ws, w_dim]`` from ``projection.save_latent``'s file."""
    path = Path(path).expanduser()
    try:
        ws = load_latent(path)["ws"]
    except (OSError, KeyError, ValueError) as err:
        raise DrfhqError(f"{path}: not a latent written by `drfhq enhance` / "
                         f"projection.save_latent ({err}); pick a file from OUT/latents") from err
    if ws.ndim == 2:
        ws = ws[None]
    if tuple(ws.shape[1:]) != (G.num_ws, G.w_dim):
        raise DrfhqError(f"{path}: W+ of shape {tuple(ws.shape[1:])}, but this generator takes "
                         f"({G.num_ws}, {G.w_dim}); it was projected into another network")
    return ws.float()


def projected_latents(files: Sequence[str | Path], G, device: torch.device | str = "cpu"
                      ) -> torch.Tensor:
    """``[len(files), num_ws, w_dim]``: the W+ of each latent file (checked against ``G``)."""
    if not files:
        return torch.zeros(0, G.num_ws, G.w_dim, device=device)
    return torch.cat([load_projected(f, G) for f in files]).to(device)


def find_inputs(names: Iterable[str], inputs: str | Path | None) -> dict[str, Path]:
    """The image file in folder ``inputs`` whose stem is each name (a latent's input)."""
    from drfhq_lib.data.images import list_images

    files = {p.stem: p for p in list_images(inputs)} if inputs and Path(inputs).is_dir() else {}
    return {name: files[name] for name in names if name in files}


def aligned_inputs(paths: Iterable[str | Path], size: int, device: torch.device | str = "cpu"
                   ) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """``({name: [3, size, size] aligned face}, {name: why it failed})`` for image files."""
    from drfhq_lib.data.align import align_face
    from drfhq_lib.data.images import pil_to_tensor

    faces, failed = {}, {}
    for path in map(Path, paths):
        try:
            faces[path.stem] = pil_to_tensor(align_face(path, size=size).image, device)[0]
        except (DrfhqError, OSError, ValueError) as err:
            failed[path.stem] = str(err)
    return faces, failed
