"""Settings of one fine-tuning run.

Defaults are StyleGAN2-ADA's ``--cfg=stylegan2`` (train.py) with the changes that official
``--resume`` makes for transfer learning (``ada_kimg = 100``, no EMA ramp-up), and the paper's
Sec. 3.2 / 5.1 (x-flips, 40 kimg, frozen mapping and ToRGB, λs, λc).

One deliberate default differs from what the official code would pick for a 1024 px network:
``gamma = 10`` is the ``stylegan2`` config's R1 weight, which the paper says it used; the
official ``paper1024`` config (and the ``auto`` heuristic at 1024 px) would use 2.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from drfhq_lib.errors import DrfhqError
from drfhq_lib.finetune.losses import BLUR_SIGMA, BLUR_SIZE, COLOR_SIZE, LAMBDA_COLOR, LAMBDA_SKETCH, SKETCH_SIZE

AugMode = Literal["ada", "noaug", "fixed"]

#: Settings that may differ between a run and its resumption (everything else must match,
#: or the resumed run would not continue the same training).
RESUMABLE_OVERRIDES = ("kimg", "snap", "out", "device", "mixed_precision", "workers", "progress",
                       "identity", "grid_size", "deterministic")
PATH_SETTINGS = ("source", "data", "out")


class ConfigError(DrfhqError, ValueError):
    """A setting is out of range, or conflicts with the run being resumed."""


@dataclass
class FinetuneConfig:
    # ---- what and where
    source: str = ""  # network file holding G_real (G, G_ema, optionally D)
    data: str = ""  # dataset zip or folder of images at the generator's resolution
    out: str = ""  # run folder: snapshots, log, grids
    # ---- budget (kimg = thousands of real images shown to D)
    kimg: float = 40.0
    batch: int = 32  # total over all ranks
    batch_gpu: int | None = None  # per rank and round; None = batch / world (one round)
    snap: float = 4.0  # kimg between snapshots
    seed: int = 0
    xflip: bool = True  # dataset doubled with mirrored copies (official --mirror)
    # ---- StyleGAN2-ADA objective (cfg 'stylegan2')
    gamma: float = 10.0  # R1 weight
    pl_weight: float = 2.0
    pl_decay: float = 0.01
    pl_batch_shrink: int = 2
    style_mixing: float = 0.9
    G_reg_interval: int = 4
    D_reg_interval: int = 16
    lr: float = 0.002
    betas: tuple[float, float] = (0.0, 0.99)
    eps: float = 1e-8
    ema_kimg: float = 10.0
    mbstd_group: int = 4  # D's minibatch std-dev group (the source D is rebuilt with it)
    # ---- augmentation
    aug: AugMode = "ada"
    p: float = 0.0  # initial p; the fixed p for aug='fixed'
    ada_target: float = 0.6
    ada_interval: int = 4
    ada_kimg: float = 100.0
    # ---- identity constraints (Eq. 1-3)
    sketch: bool = True
    color: bool = True
    lambda_sketch: float = LAMBDA_SKETCH
    lambda_color: float = LAMBDA_COLOR
    sketch_size: int = SKETCH_SIZE  # images resized to this before S (512 in the paper)
    color_size: int = COLOR_SIZE  # ... before the blur and LPIPS (256 in the paper)
    blur_size: int = BLUR_SIZE
    blur_sigma: float = BLUR_SIGMA
    prefer: Literal["auto", "official", "substitute"] = "auto"
    # ---- running
    device: str = "auto"  # 'auto' = cuda when available, else cpu
    mixed_precision: bool = True  # fp16 in the top 4 resolutions + conv clamp 256, CUDA only
    workers: int = 1  # prefetch threads for the dataset (0 = load in the training thread)
    grid_size: int = 8  # fixed latents rendered at every snapshot
    identity: bool = True  # identity similarity of the grid at every snapshot
    progress: bool = True
    deterministic: bool = False  # torch.use_deterministic_algorithms (tests)
    extra: dict = field(default_factory=dict)  # free-form, recorded with the run

    def validate(self) -> "FinetuneConfig":
        problems = []
        if self.kimg <= 0:
            problems.append(f"kimg must be positive, not {self.kimg}")
        if self.batch < 1:
            problems.append(f"batch must be at least 1, not {self.batch}")
        if self.snap <= 0:
            problems.append(f"snap must be positive (kimg between snapshots), not {self.snap}")
        if self.aug not in ("ada", "noaug", "fixed"):
            problems.append(f"aug must be ada, noaug or fixed, not {self.aug!r}")
        if not 0.0 <= self.p <= 1.0:
            problems.append(f"p must be in [0, 1], not {self.p}")
        if self.gamma < 0:
            problems.append(f"gamma must be non-negative, not {self.gamma}")
        if self.G_reg_interval < 1 or self.D_reg_interval < 1 or self.ada_interval < 1:
            problems.append("regularisation and ADA intervals must be at least 1")
        if self.pl_batch_shrink < 1:
            problems.append(f"pl_batch_shrink must be at least 1, not {self.pl_batch_shrink}")
        if self.prefer not in ("auto", "official", "substitute"):
            problems.append(f"prefer must be auto, official or substitute, not {self.prefer!r}")
        if problems:
            raise ConfigError("finetune settings: " + "; ".join(problems))
        self.betas = (float(self.betas[0]), float(self.betas[1]))  # torch rejects int betas
        for name in PATH_SETTINGS:
            if getattr(self, name):
                setattr(self, name, str(Path(getattr(self, name)).expanduser()))
        return self

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "FinetuneConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown finetune settings {unknown}")
        values = dict(d)
        if "betas" in values:
            values["betas"] = tuple(float(b) for b in values["betas"])
        return cls(**values)

    def resumed_with(self, overrides: dict) -> "FinetuneConfig":
        """This (stored) configuration with the settings a resumption may change."""
        fixed = {k: v for k, v in overrides.items()
                 if k not in RESUMABLE_OVERRIDES and v is not None
                 and _normalised(v, k) != _normalised(getattr(self, k), k)}
        if fixed:
            changes = ", ".join(f"{k}: {getattr(self, k)!r} -> {v!r}" for k, v in fixed.items())
            raise ConfigError(
                f"cannot change {changes} when resuming (the run would not continue the same "
                f"training); start a new run with another --out, or change only "
                f"{', '.join(RESUMABLE_OVERRIDES)}")
        values = self.as_dict()
        values.update({k: v for k, v in overrides.items() if k in RESUMABLE_OVERRIDES
                       and v is not None})
        return FinetuneConfig.from_dict(values).validate()


def _normalised(value, name: str = ""):
    if name in PATH_SETTINGS and value:
        return Path(value).expanduser().resolve()
    if isinstance(value, (tuple, list)):
        return [float(v) for v in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return value
