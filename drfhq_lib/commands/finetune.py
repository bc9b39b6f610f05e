"""``drfhq finetune``: the command line of the fine-tuning (:mod:`drfhq_lib.finetune`).

Options left out keep their defaults for a new run, and the stored values for a resumed one
(``--resume DIR``, or rerunning a command whose ``--out`` already holds snapshots); only the
budget and running options may change when resuming.
"""

from __future__ import annotations

import argparse

from drfhq_lib.commands.options import (DEVICE_HELP, PREFER_CHOICES, PREFER_HELP, device_of,
                                       require_path)
from drfhq_lib.errors import DrfhqError
from drfhq_lib.finetune.config import FinetuneConfig

_S = argparse.SUPPRESS


def add_cli(subparsers) -> None:
    d = FinetuneConfig()
    p = subparsers.add_parser(
        "finetune", help="fine-tune G_real into G_rendering (identity-consistent transfer)",
        description="Fine-tune G_real into G_rendering: StyleGAN2-ADA ('stylegan2' config) with "
        "the mapping network and ToRGB frozen and L_sketch + L_color (Sec. 3.2). Rerunning a "
        "command whose --out holds snapshots resumes it. Several GPUs: torchrun "
        "--nproc_per_node=N -m drfhq_lib finetune ...", argument_default=_S)
    io = p.add_argument_group("what and where")
    io.add_argument("--source", metavar="NET", help="network file of G_real (official pickle, "
                    "rosinality .pt or drfhq .safetensors)")
    io.add_argument("--data", metavar="ZIP_OR_DIR", help="dataset zip or folder of images at "
                    "the generator's resolution")
    io.add_argument("--out", metavar="DIR", help="run folder (snapshots, log, grids)")
    io.add_argument("--resume", metavar="DIR", default=None,
                    help="continue the run in DIR from its newest complete snapshot")
    b = p.add_argument_group("budget")
    b.add_argument("--kimg", type=float, help=f"thousands of real images shown to D ({d.kimg:g})")
    b.add_argument("--batch", type=int, help=f"total batch over all processes ({d.batch})")
    b.add_argument("--batch-gpu", dest="batch_gpu", type=int,
                   help="images per process and round (gradient accumulation; default: all)")
    b.add_argument("--snap", type=float, help=f"kimg between snapshots ({d.snap:g})")
    b.add_argument("--seed", type=int, help=f"random seed ({d.seed})")
    b.add_argument("--no-xflip", dest="xflip", action="store_false",
                   help="do not double the dataset with mirrored images")
    o = p.add_argument_group("objective")
    o.add_argument("--gamma", type=float, help=f"R1 weight ({d.gamma:g}, the 'stylegan2' "
                   "config's; the official 1024 px 'paper1024' config uses 2)")
    o.add_argument("--aug", choices=("ada", "noaug", "fixed"), help=f"augmentation ({d.aug})")
    o.add_argument("--p", type=float, help="augmentation probability for --aug fixed "
                   "(initial p for ada)")
    o.add_argument("--target", dest="ada_target", type=float,
                   help=f"ADA target ({d.ada_target:g})")
    o.add_argument("--ada-kimg", dest="ada_kimg", type=float,
                   help=f"ADA speed: kimg for p to move by 1 ({d.ada_kimg:g})")
    o.add_argument("--ema-kimg", dest="ema_kimg", type=float,
                   help=f"half-life of G_ema in kimg ({d.ema_kimg:g}; keep it a quarter of "
                   "--kimg or less, as 10 of the paper's 40, or G_ema stays near the source)")
    o.add_argument("--no-sketch", dest="sketch", action="store_false", help="without L_sketch")
    o.add_argument("--no-color", dest="color", action="store_false", help="without L_color")
    o.add_argument("--lambda-sketch", dest="lambda_sketch", type=float,
                   help=f"λs ({d.lambda_sketch:g})")
    o.add_argument("--lambda-color", dest="lambda_color", type=float,
                   help=f"λc ({d.lambda_color:g})")
    o.add_argument("--sketch-size", dest="sketch_size", type=int,
                   help=f"resolution S sees ({d.sketch_size})")
    o.add_argument("--color-size", dest="color_size", type=int,
                   help=f"resolution of the blurred LPIPS ({d.color_size})")
    o.add_argument("--blur-size", dest="blur_size", type=int,
                   help=f"Gaussian kernel of L_color, px ({d.blur_size})")
    o.add_argument("--blur-sigma", dest="blur_sigma", type=float,
                   help=f"its sigma, px ({d.blur_sigma:g})")
    o.add_argument("--prefer", choices=PREFER_CHOICES,
                   help="networks of the sketch, color and identity terms: " + PREFER_HELP)
    r = p.add_argument_group("running")
    r.add_argument("--device", help=DEVICE_HELP)  # default: FinetuneConfig's (auto)
    r.add_argument("--fp32", dest="mixed_precision", action="store_false",
                   help="no fp16 layers on CUDA")
    r.add_argument("--workers", type=int, help="threads prefetching images (1)")
    r.add_argument("--grid", dest="grid_size", type=int,
                   help=f"latents in the snapshot grid ({d.grid_size})")
    r.add_argument("--no-identity", dest="identity", action="store_false",
                   help="skip the identity similarity at snapshots")
    r.add_argument("--no-progress", dest="progress", action="store_false")
    p.set_defaults(func=run, cmd="finetune")


def check_paths(args, overrides: dict) -> None:
    """Flags naming files that must exist, checked before any network is built."""
    if args.resume is not None:
        require_path(args.resume, "--resume", "run folder",
                     "pass the --out folder of an earlier `drfhq finetune`")
    else:
        missing = [f"--{k}" for k in ("source", "data", "out") if k not in overrides]
        if missing:
            raise DrfhqError(f"{', '.join(missing)} required (or --resume DIR to continue a "
                             "run); see `drfhq finetune --help`")
    if "source" in overrides:
        require_path(overrides["source"], "--source", "network file",
                     "pass G_real: the official ffhq.pkl (`drfhq weights fetch stylegan2-ffhq`, "
                     "then `drfhq weights path stylegan2-ffhq`), a rosinality .pt or a drfhq "
                     ".safetensors")
    if "data" in overrides:
        require_path(overrides["data"], "--data", "dataset zip or folder",
                     "make one with `drfhq dataset pack FOLDER --out DATA.zip --resolution R`")
    if "device" in overrides:
        device_of(overrides["device"])


def run(args) -> int:
    from drfhq_lib.finetune.trainer import Trainer

    overrides = {k: v for k, v in vars(args).items()
                 if k in FinetuneConfig.__dataclass_fields__}
    check_paths(args, overrides)
    trainer = Trainer(None, args.resume, overrides)
    network_file = trainer.run()
    if trainer.main:
        print(f"G_rendering: {network_file} (G_ema), log: {trainer.out / 'log.jsonl'}")
    return 0
