"""``drfhq encoder train``: a W+ encoder for a generator, to start projections from
(:mod:`drfhq_lib.infer.encoder_job`, :mod:`drfhq_lib.infer.encoder_training`)."""

from __future__ import annotations

import shlex
from pathlib import Path

from drfhq_lib.commands.options import add_device, add_prefer, device_of, require_inputs, \
    require_path
from drfhq_lib.errors import DrfhqError

# flag -> EncoderTrainConfig field, for the flags that set one
CONFIG_FLAGS = {"kind": "--kind", "kimg": "--kimg", "batch": "--batch", "lr": "--lr",
                "mixing": "--mixing", "head_channels": "--head-channels",
                "input_size": "--input-size",
                "latent_weight": "--latent-weight", "lpips_weight": "--lpips-weight",
                "pixel_weight": "--pixel-weight", "image_every": "--image-every",
                "real_lpips_weight": "--real-lpips-weight",
                "real_pixel_weight": "--real-pixel-weight", "real_every": "--real-every",
                "real_batch": "--real-batch", "delta_weight": "--delta-weight", "seed": "--seed"}


def load_generator(name: str, device):
    """(G, Resolved) of ``--generator``: a registry name (a mini-world network, the official
    FFHQ generator), a network file, or a `drfhq finetune` run folder (its newest snapshot)."""
    import torch

    from drfhq_lib.files import sha256_file
    from drfhq_lib.infer.enhance import generator_from_file
    from drfhq_lib.nets import weights
    from drfhq_lib.nets.weights import Resolved

    if name in weights.NETWORKS:
        resolved = weights.resolve(name, "official")
        G = generator_from_file(resolved.path, device)
    else:
        path = require_path(name, "--generator", "registry name, network file or run folder",
                            "give a registry name (`drfhq weights` lists them), a network file "
                            "or a `drfhq finetune` run folder")
        if path.is_dir():
            from drfhq_lib.finetune import latest_snapshot

            snapshot = latest_snapshot(path)
            if snapshot is None:
                raise DrfhqError(f"--generator {path}: no complete fine-tuning snapshot in "
                                 "this folder")
            path = Path(snapshot.network_file)
        G = generator_from_file(path, device)
        resolved = Resolved(f"generator:{path.name}", "official", path.name, path,
                            sha256_file(path))
    return G.to(device, torch.float32).eval().requires_grad_(False), resolved


def command_line(args) -> str:
    """The command that reproduces this run (every flag that matters, spelled out)."""
    parts = ["drfhq", "encoder", "train", "--generator", args.generator, "--out", str(args.out)]
    for flag, folders in (("--images", args.images), ("--val-images", args.val_images)):
        if folders:
            parts += [flag, *map(str, folders)]
    for field, flag in CONFIG_FLAGS.items():
        value = getattr(args, field)
        if value is not None:
            parts += [flag, str(value)]
    parts += ["--snapshot-kimg", f"{args.snapshot_kimg:g}", "--prefer", args.prefer]
    if args.export:
        parts += ["--export", str(args.export)]
    if args.label:
        parts += ["--label", args.label]
    return shlex.join(parts)


def image_files(folders, flag: str) -> list:
    """The image files of ``flag``'s folders/files (none when the flag is not given)."""
    from drfhq_lib.data.manifest import expand_inputs

    if not folders:
        return []
    files = expand_inputs(require_inputs(folders))
    if not files:
        raise DrfhqError(f"{flag} {' '.join(map(str, folders))}: no image files there "
                         "(aligned faces, e.g. what `drfhq align` writes)")
    return files


def run_train(args) -> int:
    from drfhq_lib.infer import encoder_job
    from drfhq_lib.infer.encoder_training import EncoderTrainConfig
    from drfhq_lib.nets import weights

    if args.snapshot_kimg <= 0:
        raise DrfhqError(f"--snapshot-kimg {args.snapshot_kimg:g}: must be > 0")
    values = {f: getattr(args, f) for f in CONFIG_FLAGS if getattr(args, f) is not None}
    cfg = EncoderTrainConfig(**values)
    if cfg.kimg <= 0 or cfg.batch < 2:
        raise DrfhqError(f"--kimg {cfg.kimg:g} --batch {cfg.batch}: need kimg > 0 and a batch "
                         "of at least 2 (BatchNorm)")
    device = device_of(args.device)
    real, val = image_files(args.images, "--images"), image_files(args.val_images, "--val-images")
    G, resolved = load_generator(args.generator, device)
    networks = [resolved]
    lpips = None
    if cfg.uses_lpips(bool(real)) or val:
        from drfhq_lib.nets.perceptual import build_lpips

        lpips = build_lpips(args.prefer, device)
        networks += lpips.resolved
    command = command_line(args)
    print(f"encoder train: {cfg.kind} encoder for {resolved.label} ({G.img_resolution} px, "
          f"W+ {G.num_ws} x {G.w_dim}); {cfg.kimg:g} kimg of its samples"
          + (f" + {len(real)} real inputs" if real else "")
          + (f"; validated on {len(val)} held-out ones" if val else "") + f"; {args.out}",
          flush=True)
    final = encoder_job.train_encoder(
        G, args.out, cfg, encoder_job.generator_record(G, resolved), networks, lpips=lpips,
        real_paths=real, val_paths=val, device=device, snapshot_kimg=args.snapshot_kimg,
        progress=args.progress, command=command)
    print(f"encoder train: {final} (+ .provenance.json)")
    if args.export:
        export = Path(args.export)
        label = args.label or (export.stem if export.suffix == ".safetensors" else "encoder")
        dest = encoder_job.export(G, final, args.export, label, command, device)
        print(f"encoder train: exported fp16 {dest} (+ {label}.provenance.json)")
        if label in weights.NETWORKS:
            from drfhq_lib.files import sha256_file

            digest = sha256_file(dest)
            if weights.get(label).sha256 != digest:
                print(f"encoder train: the registry's sha256 of {label} is "
                      f"{weights.get(label).sha256}; set it to {digest!r} in "
                      "drfhq_lib/nets/weights.py (MINIWORLD_ENCODER_SHA256)")
    return 0


def add_cli(subparsers) -> None:
    from drfhq_lib.infer.encoder_training import EncoderTrainConfig as C

    p = subparsers.add_parser("encoder", help="W+ encoders that start the projection")
    steps = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    t = steps.add_parser(
        "train", help="train a W+ encoder for a generator (resumable)",
        description="Train a pSp/e4e-layout W+ encoder for --generator on images the generator "
        "samples (their W+ known: latent loss; optional LPIPS/L2 image losses) and optionally "
        "on a folder of real aligned faces (--images: image losses only). Writes OUT/"
        "encoder.safetensors with its provenance; snapshots every --snapshot-kimg; rerunning "
        "the same command resumes (a larger --kimg continues). Use it with `drfhq enhance "
        "--init encoder --encoder OUT/encoder.safetensors`.")
    t.add_argument("--generator", required=True,
                   help="registry name (e.g. stylegan2-miniworld-R64), network file, or "
                        "`drfhq finetune` run folder")
    t.add_argument("--out", type=Path, required=True, help="run folder")
    t.add_argument("--images", type=Path, nargs="+", default=None,
                   help="folders/files of real aligned faces (image losses only)")
    t.add_argument("--val-images", type=Path, nargs="+", default=None,
                   help="folders/files of held-out real aligned faces: validation only "
                        "(val_real_lpips, val_real_pixel in the log at each snapshot)")
    t.add_argument("--kind", choices=("e4e", "psp"), default=None, help=f"({C.kind})")
    t.add_argument("--kimg", type=float, default=None,
                   help=f"sampled images, thousands ({C.kimg:g})")
    t.add_argument("--batch", type=int, default=None, help=f"({C.batch})")
    t.add_argument("--lr", type=float, default=None, help=f"Adam ({C.lr:g})")
    t.add_argument("--mixing", type=float, default=None,
                   help=f"style-mixing probability of the sampled W+ ({C.mixing:g})")
    t.add_argument("--head-channels", type=int, default=None,
                   help=f"width of the heads' convs ({C.head_channels})")
    t.add_argument("--input-size", type=int, default=None,
                   help="face size the encoder reads, a power of two (half the generator's "
                        "resolution, at most 256)")
    t.add_argument("--latent-weight", type=float, default=None, help=f"({C.latent_weight:g})")
    t.add_argument("--lpips-weight", type=float, default=None,
                   help=f"LPIPS on the sampled images ({C.lpips_weight:g})")
    t.add_argument("--pixel-weight", type=float, default=None,
                   help=f"L2 on the sampled images ({C.pixel_weight:g})")
    t.add_argument("--image-every", type=int, default=None,
                   help=f"the sampled images' image losses every N steps ({C.image_every})")
    t.add_argument("--real-lpips-weight", type=float, default=None,
                   help=f"LPIPS on the real inputs ({C.real_lpips_weight:g})")
    t.add_argument("--real-pixel-weight", type=float, default=None,
                   help=f"L2 on the real inputs ({C.real_pixel_weight:g})")
    t.add_argument("--real-every", type=int, default=None,
                   help=f"a batch of real inputs every N steps ({C.real_every})")
    t.add_argument("--real-batch", type=int, default=None, help=f"({C.real_batch})")
    t.add_argument("--delta-weight", type=float, default=None,
                   help=f"e4e: L2 of the rows' offsets from row 0 ({C.delta_weight:g})")
    t.add_argument("--seed", type=int, default=None, help=f"({C.seed})")
    t.add_argument("--snapshot-kimg", type=float, default=2.0, help="(2)")
    t.add_argument("--export", type=Path, default=None,
                   help="also write an fp16 copy here (a .safetensors file or a folder) with "
                        "LABEL.provenance.json beside it")
    t.add_argument("--label", default=None, help="name of the exported copy (its file stem)")
    add_device(t)
    add_prefer(t)
    t.add_argument("--no-progress", dest="progress", action="store_false")
    t.set_defaults(func=run_train, cmd="encoder train")
