"""The committed mini-world networks: G_real_mini and the G_rendering_mini variants.

They live in ``drfhq_lib/miniworld/networks/`` (fp16 safetensors, each with a provenance file)
and are listed in the weights registry. Every figure made with them carries ``WORLD_NOTE``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from drfhq_lib.miniworld.build import NETWORKS_DIR, VARIANTS, real_name, rendering_name
from drfhq_lib.miniworld.errors import MiniworldError

WORLD_NOTE = "mini world (CG→CG), not the paper's FFHQ networks"
RESOLUTION = 64


@dataclass
class MiniNetworks:
    G_real: torch.nn.Module
    renderings: dict[str, torch.nn.Module]  # Fig. 10 variant -> G_rendering_mini
    resolution: int
    labels: dict[str, str]
    resolved: list = field(default_factory=list)

    @property
    def G_rendering(self) -> torch.nn.Module:
        return self.renderings["full"]

    @property
    def guide_settings(self) -> dict:
        """identity_guide's settings as the fine-tuning used them (sizes scaled to 64 px)."""
        flags = provenance(rendering_name(self.resolution))["finetune_flags"]
        value = dict(zip(flags[::2], flags[1::2]))
        return {"lambda_sketch": float(value["--lambda-sketch"]),
                "sketch_size": int(value["--sketch-size"]),
                "color_size": int(value["--color-size"])}


def network_file(name: str) -> Path:
    path = NETWORKS_DIR / f"{name}.safetensors"
    if not path.is_file():
        raise MiniworldError(f"{path}: the mini-world network {name} is missing; it is part of "
                             "the checkout (git restore it), or rebuild every mini-world network "
                             "with `drfhq miniworld train`")
    return path


def provenance(name: str) -> dict:
    return json.loads((NETWORKS_DIR / f"{name}.provenance.json").read_text())


def available(resolution: int = RESOLUTION) -> bool:
    return (NETWORKS_DIR / f"{real_name(resolution)}.safetensors").is_file()


def load_generator(name: str, device="cpu") -> torch.nn.Module:
    return generator_from_file(network_file(name), device)


def generator_from_file(path, device="cpu") -> torch.nn.Module:
    """The G_ema of a network file, in fp32, eval mode, without gradients."""
    from drfhq_lib.nets import load_network

    return load_network(path, device=device)["G_ema"].float().eval().requires_grad_(False)


def load(device="cpu", resolution: int = RESOLUTION, variants=tuple(VARIANTS)) -> MiniNetworks:
    from drfhq_lib.nets import weights

    names = {"G_real": real_name(resolution),
             **{v: rendering_name(resolution, v) for v in variants}}
    G_real = load_generator(names["G_real"], device)
    renderings = {v: load_generator(names[v], device) for v in variants}
    resolved = [weights.resolve(n, "official") for n in names.values() if n in weights.NETWORKS]
    return MiniNetworks(G_real, renderings, resolution, names, resolved)


def aligned_set(folder, count: int, set_name: str = "heldout", size: int = RESOLUTION) -> Path:
    """The first ``count`` identities of one of ``miniworld train``'s sets (``build.SETS``:
    train, finetune, heldout), aligned at ``size``: ``folder`` if it holds them, else rendered
    (at twice the size, beside it) and aligned there."""
    from drfhq_lib.miniworld import aligned
    from drfhq_lib.miniworld.build import SETS
    from drfhq_lib.miniworld.render_cli import render_dataset

    folder = Path(folder)
    if (folder / aligned.RECORDS).exists() and len(aligned.read_records(folder)) >= count:
        return folder
    renders = folder.parent / f"{folder.name}-renders"
    render_dataset(renders, count, SETS[set_name], 2 * size, progress=True)
    return aligned.align_folder(renders, folder, size)


def heldout_folder(folder, count: int, size: int = RESOLUTION) -> Path:
    """The aligned held-out set (seed 2, the benchmark's identities, never trained on)."""
    return aligned_set(folder, count, "heldout", size)
