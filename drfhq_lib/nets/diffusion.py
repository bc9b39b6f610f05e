"""Diffusion checkpoints for SDEdit (Fig. 8): a local folder in the layout of ``diffusers``,
read without running any code from it.

The paper ran SDEdit with the latent diffusion model of Rombach et al. trained on FFHQ 256. That
network is published only as a Lightning checkpoint of the authors' own code; the closest network
published in the ``diffusers`` layout is the same authors' LDM-VQ-4 trained on CelebA-HQ 256
(``CompVis/ldm-celebahq-256``, registry entry :data:`REGISTRY_NAME`). Any unconditional DDPM or
LDM folder written by ``save_pretrained`` works (e.g. ``google/ddpm-celebahq-256``)::

    FOLDER/model_index.json          {"unet": ["diffusers", "UNet2DModel"], ...}
    FOLDER/unet/config.json + diffusion_pytorch_model.safetensors (or .bin)
    FOLDER/scheduler/scheduler_config.json
    FOLDER/vqvae/ (or vae/)          only for latent diffusion: VQModel or AutoencoderKL

(the flat layout of some hub repositories, ``config.json`` and ``scheduler_config.json`` at the
top, works too). What keeps the folder from running code:

* the pipeline class is never loaded: ``model_index.json`` is read as JSON and each component
  must be one of :data:`MODEL_CLASSES` / :data:`SCHEDULER_CLASSES` of the ``diffusers`` library
  (a custom pipeline or a class from another library is refused);
* each model is built by its own ``diffusers`` class from its JSON config, its weights read from
  ``.safetensors`` (``use_safetensors=True``), with ``local_files_only``: nothing is downloaded;
* a component with only a pickled ``.bin`` is first read by the project's weights-only loader
  (:func:`drfhq_lib.nets.state_dict.load_weights_only`), which refuses any pickle that names
  code, before ``diffusers`` (which also loads it weights-only) builds the model.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from drfhq_lib.errors import CheckpointFormatError, UnsafeCheckpointError
from drfhq_lib.files import sha256_file
from drfhq_lib.nets.weights import Resolved, get, weights_dir

#: The registry entry naming the checkpoint Fig. 8 uses by default.
REGISTRY_NAME = "ldm-celebahq-256"
#: What the folder must hold, in words (for "not run" reasons and errors).
LAYOUT = "model_index.json, unet/, scheduler/ and, for latent diffusion, vqvae/ or vae/"

MODEL_CLASSES = {"unet": {"UNet2DModel"}, "vqvae": {"VQModel", "AutoencoderKL"},
                 "vae": {"VQModel", "AutoencoderKL"}}
SCHEDULER_CLASSES = {"DDPMScheduler", "DDIMScheduler"}  # first-order, with add_noise
PIPELINE_CLASSES = {"LDMPipeline", "DDPMPipeline", "DDIMPipeline"}
SAFETENSORS = "diffusion_pytorch_model.safetensors"
PICKLE = "diffusion_pytorch_model.bin"


@dataclass
class DiffusionModel:
    """A loaded checkpoint: the UNet, its scheduler and (latent diffusion) the autoencoder.

    ``latent_scale`` multiplies the autoencoder's latents before the UNet sees them (the
    ``scaling_factor`` of diffusers' LDM pipeline); ``resolution`` is the size of the images
    the model takes and gives, in pixels.
    """

    unet: torch.nn.Module
    scheduler: object  # a diffusers scheduler (its state is copied for each run)
    autoencoder: torch.nn.Module | None
    latent_scale: float
    resolution: int
    resolved: Resolved
    notes: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return "latent diffusion" if self.autoencoder is not None else "pixel diffusion"

    @property
    def label(self) -> str:
        return self.resolved.label

    @property
    def num_train_timesteps(self) -> int:
        return int(self.scheduler.config.num_train_timesteps)


# ----------------------------------------------------------------------------- where it is

def default_folder() -> Path:
    """Where the registry's checkpoint goes: ``$DRFHQ_WEIGHTS/ldm-celebahq-256/``."""
    return weights_dir() / Path(get(REGISTRY_NAME).filename).parent


def find_checkpoint(folder: str | os.PathLike | None = None) -> Path | None:
    """The checkpoint folder to use: ``folder`` if it exists, else (``folder`` None) the
    registry's when installed; None where there is none."""
    if folder is not None:
        return Path(folder) if Path(folder).is_dir() else None
    found = get(REGISTRY_NAME).find()
    return found.parent if found is not None else None


def missing_reason(folder: str | os.PathLike | None = None) -> str:
    """Why SDEdit cannot run, naming the folder it needs and how to get it."""
    if folder is not None:
        return (f"needs the diffusion checkpoint folder {folder} ({LAYOUT}), which does not "
                "exist; pass the folder of an unconditional DDPM/LDM saved with diffusers' "
                "save_pretrained")
    return (f"needs the diffusion checkpoint folder $DRFHQ_WEIGHTS/{REGISTRY_NAME} (here "
            f"{default_folder()}; {LAYOUT}): {get(REGISTRY_NAME).source}; or pass "
            "checkpoint=FOLDER")


# ----------------------------------------------------------------------------- reading it

def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise CheckpointFormatError(f"{path}: not readable JSON ({err}); copy the checkpoint "
                                    "folder again") from None
    if not isinstance(data, dict):
        raise CheckpointFormatError(f"{path}: expected a JSON object")
    return data


def _components(folder: Path) -> dict[str, tuple[Path, str]]:
    """{role: (folder of its config, class name)} for unet, scheduler and the autoencoder."""
    index = folder / "model_index.json"
    if not index.is_file():  # the flat layout: one UNet and its scheduler at the top
        unet = folder / "config.json"
        if not unet.is_file():
            raise CheckpointFormatError(f"{folder}: no model_index.json (nor config.json); a "
                                        f"diffusion checkpoint folder holds {LAYOUT}")
        found = {"unet": (folder, str(_read_json(unet).get("_class_name")))}
        if (folder / "scheduler_config.json").is_file():
            found["scheduler"] = (folder, "")
    else:
        spec = _read_json(index)
        pipeline = spec.get("_class_name")
        if pipeline not in PIPELINE_CLASSES:
            raise UnsafeCheckpointError(
                f"{index}: pipeline {pipeline!r} is not an unconditional diffusion pipeline "
                f"({', '.join(sorted(PIPELINE_CLASSES))}); custom pipelines are never loaded")
        found = {}
        for role, value in spec.items():
            if role.startswith("_") or value in (None, [None, None]):
                continue
            if not (isinstance(value, list) and len(value) == 2):
                raise CheckpointFormatError(f"{index}: {role!r} must be [library, class]")
            library, name = value
            if library != "diffusers":
                raise UnsafeCheckpointError(
                    f"{index}: {role!r} comes from {library!r}; only classes of the diffusers "
                    "library are loaded (a custom class would run code from the folder)")
            if role not in {*MODEL_CLASSES, "scheduler"}:
                raise CheckpointFormatError(f"{index}: unexpected component {role!r}; an "
                                            f"unconditional DDPM/LDM has {LAYOUT}")
            found[role] = (folder / role, name)
    if "scheduler" not in found:
        raise CheckpointFormatError(f"{folder}: no scheduler (scheduler/scheduler_config.json)")
    if "unet" not in found:
        raise CheckpointFormatError(f"{folder}: no unet/ component")
    for role, (where, name) in found.items():
        if role != "scheduler" and name not in MODEL_CLASSES[role]:
            raise UnsafeCheckpointError(f"{where}: {role} class {name!r} is not one of "
                                        f"{', '.join(sorted(MODEL_CLASSES[role]))}")
    return found


def _weights_file(where: Path) -> Path:
    for name in (SAFETENSORS, PICKLE):
        if (where / name).is_file():
            return where / name
    if any(where.glob("*.index.json")):
        raise CheckpointFormatError(f"{where}: sharded weights are not supported; save the "
                                    "model unsharded (save_pretrained(max_shard_size='20GB'))")
    raise CheckpointFormatError(f"{where}: no {SAFETENSORS} (or {PICKLE}); copy the "
                                "component's weights into this folder")


def _load_model(role: str, where: Path, name: str, folder: Path, device, dtype) -> tuple:
    import diffusers

    weights = _weights_file(where)
    if weights.suffix == ".bin":
        from drfhq_lib.nets.state_dict import load_weights_only

        load_weights_only(weights, f"diffusers {role} weights",
                          "convert the folder to safetensors (save_pretrained with "
                          "safe_serialization=True) on a machine you trust")
    subfolder = where.relative_to(folder).as_posix()
    try:
        model = getattr(diffusers, name).from_pretrained(
            folder, subfolder=None if subfolder == "." else subfolder, local_files_only=True,
            use_safetensors=weights.suffix == ".safetensors", torch_dtype=dtype)
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as err:
        raise CheckpointFormatError(f"{where}: diffusers could not build the {role} ({name}) "
                                    f"from it: {type(err).__name__}: {str(err)[:300]}") from None
    return model.eval().requires_grad_(False).to(device), weights


def _scheduler(where: Path, name: str, override: str | None):
    import diffusers

    config = _read_json(where / "scheduler_config.json")
    name = {"ddim": "DDIMScheduler", "ddpm": "DDPMScheduler", None: config.get("_class_name")
            or name}.get(override, override)
    if name not in SCHEDULER_CLASSES:
        raise CheckpointFormatError(
            f"{where / 'scheduler_config.json'}: scheduler {name!r} is not supported; SDEdit "
            f"here uses {' or '.join(sorted(SCHEDULER_CLASSES))} (pass scheduler='ddim' to use "
            "DDIM with this checkpoint's noise schedule)")
    return getattr(diffusers, name).from_config(config)


def _latent_scale(where: Path, autoencoder) -> tuple[float, str]:
    """The factor between the autoencoder's latents and the UNet's: the config's
    ``scaling_factor`` where the file states one; VQ autoencoders of the LDM authors were
    trained with 1.0, which diffusers' class default (0.18215) would silently replace."""
    written = _read_json(where / "config.json").get("scaling_factor")
    if written is not None:
        return float(written), f"latent scale {written} (from {where.name}/config.json)"
    if type(autoencoder).__name__ == "VQModel":
        return 1.0, (f"latent scale 1.0: {where.name}/config.json states none, and the LDM "
                     "authors' VQ models use 1.0 (not diffusers' default 0.18215)")
    scale = float(autoencoder.config.scaling_factor)
    return scale, f"latent scale {scale} (the class default; the config states none)"


def folder_digest(files: list[Path], folder: Path) -> str:
    """One sha256 for a checkpoint folder: of the sorted ``relative path  sha256`` lines of
    its files (so any changed weight or config changes it)."""
    lines = sorted(f"{p.relative_to(folder).as_posix()}  {sha256_file(p)}" for p in files)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def load_diffusion(folder: str | os.PathLike, device: torch.device | str = "cpu",
                   dtype: torch.dtype = torch.float32, scheduler: str | None = None,
                   label: str | None = None) -> DiffusionModel:
    """The UNet, scheduler and autoencoder of a local diffusers folder (see the module text for
    what is refused). ``scheduler``: None for the folder's own, or "ddim" / "ddpm" with the
    folder's noise schedule. ``label``: how figures name it (default: the registry name when
    the folder is the registry's, else the folder's name)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointFormatError(missing_reason(folder))
    parts = _components(folder)
    unet, unet_file = _load_model("unet", *parts["unet"], folder, device, dtype)
    files = [unet_file, parts["unet"][0] / "config.json"]
    autoencoder, scale, notes = None, 1.0, []
    role = next((r for r in ("vqvae", "vae") if r in parts), None)
    if role is not None:
        autoencoder, ae_file = _load_model(role, *parts[role], folder, device, dtype)
        scale, note = _latent_scale(parts[role][0], autoencoder)
        notes.append(note)
        files += [ae_file, parts[role][0] / "config.json"]
    sched_dir = parts["scheduler"][0]
    sched = _scheduler(sched_dir, parts["scheduler"][1], scheduler)
    files.append(sched_dir / "scheduler_config.json")
    if (folder / "model_index.json").is_file():
        files.append(folder / "model_index.json")
    size = int(unet.config.sample_size if isinstance(unet.config.sample_size, int)
               else unet.config.sample_size[0])
    if autoencoder is not None:
        size *= 2 ** (len(autoencoder.config.block_out_channels) - 1)
    registry = find_checkpoint(None)
    is_registry = registry is not None and registry.resolve() == folder.resolve()
    name = REGISTRY_NAME if is_registry else "diffusion-checkpoint"
    resolved = Resolved(name, "official", label or (REGISTRY_NAME if is_registry else
                                                    f"diffusion[{folder.name}]"),
                        folder, folder_digest(files, folder))
    notes.append(f"scheduler {type(sched).__name__} over {sched.config.num_train_timesteps} "
                 f"training steps ({sched.config.beta_schedule} betas "
                 f"{sched.config.beta_start}..{sched.config.beta_end})")
    return DiffusionModel(unet, sched, autoencoder, scale, size, resolved, notes)
