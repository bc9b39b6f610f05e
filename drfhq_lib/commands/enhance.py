"""``drfhq enhance`` and ``drfhq demo``: rendered portraits in, photo-real faces pasted back
out (:mod:`drfhq_lib.infer.enhance`)."""

from __future__ import annotations

from pathlib import Path

from drfhq_lib.commands.options import (Deprecated, add_device, add_prefer, batch_exit_code,
                                       device_of, require_inputs, require_path)
from drfhq_lib.errors import DrfhqError

UNTRAINED_BANNER = """\
*** The official FFHQ generator is not installed, so this demo runs the whole pipeline
*** (align -> project -> render -> paste back) on an UNTRAINED small generator. Its pictures
*** are NOT results; they are stamped as such. For real results:
***   drfhq weights fetch stylegan2-ffhq
***   drfhq finetune --source ~/.cache/drfhq/ffhq.pkl --data DRFHQ.zip --out runs/drfhq
***   drfhq enhance IMAGES --rendering runs/drfhq/<snapshot> --out OUT"""


def check_networks(args) -> None:
    """--rendering and --real name files that exist (before anything is loaded)."""
    if getattr(args, "rendering", None) not in (None, "miniworld"):
        require_path(args.rendering, "--rendering", "network file or run folder",
                     "pass the G_rendering `drfhq finetune` wrote (its --out folder or a "
                     "network file in it)")
    if getattr(args, "real", None) not in (None, "miniworld"):
        require_path(args.real, "--real", "network file",
                     "pass a G_real network file, or leave --real out to use the official "
                     "FFHQ generator (`drfhq weights fetch stylegan2-ffhq`)")


def check_options(args) -> None:
    if args.size is not None and args.size < 8:
        raise DrfhqError(f"--size {args.size}: too small; leave it out to work at the "
                         "generator's resolution")
    if not 0.0 <= args.color_match <= 1.0:
        raise DrfhqError(f"--color-match {args.color_match:g}: must be between 0 (off) and 1")
    if args.steps is not None and args.steps < 1:
        raise DrfhqError(f"--steps {args.steps}: must be at least 1 (paper: 500)")


def _rendering_sha256(args, nets) -> str | None:
    """sha256 of the G_rendering in use (its file, or the mini world's registry entry)."""
    from drfhq_lib.files import sha256_file

    rendering = getattr(args, "rendering", None)
    if rendering not in (None, "miniworld") and Path(rendering).is_file():
        return sha256_file(rendering)
    mini = [r for r in nets.resolved if r.name.startswith("stylegan2-miniworld-R")]
    return mini[-1].sha256 if mini else None


def choose_init(args, nets, device):
    """(init or None, "w_avg"/"encoder", the encoder's Resolved or None, notes) for --init and
    --encoder. ``auto``: the encoder given, else the committed one with the mini world's
    networks, else w_avg (the paper's start, the default with the official networks)."""
    from drfhq_lib.infer import encoder_init

    path = getattr(args, "encoder", None)
    choice = getattr(args, "init", "auto")
    if choice == "w_avg":
        if path is not None:
            raise DrfhqError(f"--encoder {path} with --init w_avg: the encoder would not be "
                             "used; drop one of the two")
        return None, "w_avg", None, []
    if path is None and nets.world == "miniworld":
        committed = encoder_init.miniworld_encoder()
        path = committed.path if committed else None
    if path is None:
        if choice == "encoder":
            raise DrfhqError("--init encoder needs --encoder FILE (the mini world's is used "
                             f"only with its networks): {encoder_init.TRAIN_HINT} for your "
                             "G_rendering")
        return None, "w_avg", None, []
    path = require_path(path, "--encoder", "encoder file", encoder_init.TRAIN_HINT)
    init, notes = encoder_init.load_encoder_init(path, nets.G_rendering, device,
                                                 _rendering_sha256(args, nets))
    return init, "encoder", encoder_init.encoder_record(path), notes


def enhance_and_report(args, inputs: list[Path], nets, device) -> int:
    import torch

    from drfhq_lib.infer import encoder_init, enhance, sharding
    from drfhq_lib.infer.projection import ProjectionParams, default_batch
    from drfhq_lib.nets import weights
    from drfhq_lib.provenance import write_sidecar

    if not inputs:
        raise DrfhqError("no images to enhance (folders are searched for image files by "
                         "suffix)")
    size = args.size or nets.G_real.img_resolution
    ranks = sharding.current_ranks()
    say = print if ranks.main else (lambda *a, **k: None)  # under torchrun: rank 0 reports
    say(f"{args.cmd}: G_real = {nets.real_label}; G_rendering = {nets.rendering_label}"
        + (f"; {ranks.world} processes (torchrun)" if ranks.world > 1 else ""), flush=True)
    for path, name in enhance.renamed_inputs(inputs).items():
        say(f"{args.cmd}: {path} shares its stem with another input: written as {name}.png")
    params = ProjectionParams(steps=args.steps or ProjectionParams.steps, seed=args.seed)
    batch = args.batch or default_batch(torch.device(device), size)
    composite = enhance.CompositeParams(args.erode, args.blur, args.color_match)
    init, start, encoder_r, notes = choose_init(args, nets, device)
    if init is not None:
        params = encoder_init.from_a_guess(params)
    say(f"{args.cmd}: projection starts from "
        + (f"the encoder {encoder_r.path}" if encoder_r else "w_avg") + f", {params.steps} steps",
        flush=True)
    for note in notes:
        say(f"{args.cmd}: note: {note}", flush=True)
    rows = enhance.enhance_files(inputs, args.out, nets, params, batch, args.size, args.prefer,
                                 composite, device, args.overwrite, init=init)
    if not ranks.main:
        return 0  # rank 0 reports the merged manifest and its exit code
    lpips_r = weights.resolve("lpips-vgg16", args.prefer)
    mask_r = weights.resolve("bisenet-faceparse", args.prefer)
    write_sidecar(Path(args.out) / "manifest.csv",
                  [*nets.resolved, lpips_r, mask_r, *([encoder_r] if encoder_r else [])],
                  {**params.as_dict(), "init": start, "G_real": nets.real_label,
                   "G_rendering": nets.rendering_label, "batch": batch, "size": args.size,
                   "erode": args.erode, "blur": args.blur, "color_match": args.color_match})
    counts: dict[str, int] = {}
    for row in rows.values():
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    print(f"{args.cmd}: {len(rows)} inputs: "
          + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
          + f"; manifest {Path(args.out) / 'manifest.csv'}")
    return batch_exit_code(counts.get("failed", 0))


def run_enhance(args) -> int:
    from drfhq_lib.data.manifest import expand_inputs
    from drfhq_lib.finetune.distributed import ranks_from_env
    from drfhq_lib.infer.enhance import load_generators
    from drfhq_lib.infer.sharding import join

    check_options(args)
    check_networks(args)
    inputs = expand_inputs(require_inputs(args.images))
    _, device = join(device_of(args.device, ranks_from_env().local_rank))
    nets = load_generators(args.real, args.rendering, device)
    return enhance_and_report(args, inputs, nets, device)


MINIWORLD_DEMO_STEPS = 200  # a demo under 3 minutes on 2 CPU cores


def run_demo(args) -> int:
    from drfhq_lib.finetune.distributed import ranks_from_env
    from drfhq_lib.infer.enhance import demo_inputs, load_generators
    from drfhq_lib.infer.projection import ProjectionParams
    from drfhq_lib.infer.sharding import join

    check_options(args)
    check_networks(args)
    _, device = join(device_of(args.device, ranks_from_env().local_rank))
    nets = load_generators(None, args.rendering, device, allow_untrained=True,
                           untrained_size=args.size or 64)
    if not nets.trained:
        print(UNTRAINED_BANNER, flush=True)
        args.steps = args.steps or 30
    elif nets.world == "miniworld" and args.steps is None:
        args.steps = MINIWORLD_DEMO_STEPS
        print(f"demo: the mini world's networks ({nets.note}); {args.steps} projection steps "
              "(the paper's 500: --steps 500)", flush=True)
    args.steps = args.steps or ProjectionParams().steps
    return enhance_and_report(args, demo_inputs(args.limit), nets, device)


def _common_arguments(p, out_default: str | None) -> None:
    from drfhq_lib.infer.enhance import CompositeParams

    p.add_argument("--out", type=Path, required=out_default is None, default=out_default,
                   help="output folder" + (f" ({out_default})" if out_default else ""))
    p.add_argument("--steps", type=int, default=None, help="projection steps (paper: 500)")
    p.add_argument("--batch", type=int, default=None,
                   help="portraits projected together (default: 8 on CUDA; on CPU 8 up to "
                        "256 px, 4 at 512, 2 at 1024, for memory)")
    p.add_argument("--size", type=int, default=None,
                   help="working resolution of alignment (default: the generator's)")
    add_device(p)
    add_prefer(p)
    p.add_argument("--erode", type=int, default=CompositeParams.erode,
                   help="mask erosion in pixels (for a 1024 px face)")
    p.add_argument("--blur", type=float, default=CompositeParams.blur_sigma,
                   help="mask blur sigma in pixels (for a 1024 px face)")
    p.add_argument("--color-match", dest="color_match", type=float,
                   default=CompositeParams.colour_match,
                   help="match the face's color statistics to the original's, 0 (off) .. 1")
    p.add_argument("--colour-match", dest="color_match", type=float, action=Deprecated,
                   use="--color-match")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init", choices=("auto", "w_avg", "encoder"), default="auto",
                   help="where the projection starts: w_avg (the paper's), or an encoder's "
                        "W+ (--encoder; `drfhq encoder train` makes one); auto (default): "
                        "--encoder if given, the committed encoder with the mini world's "
                        "networks, else w_avg. From an encoder the projector adds no "
                        "latent noise")
    p.add_argument("--encoder", type=Path, default=None,
                   help="encoder file for --init encoder (`drfhq encoder train`'s "
                        "OUT/encoder.safetensors)")
    p.add_argument("--overwrite", action="store_true", help="redo inputs whose output exists")


def add_cli(subparsers) -> None:
    p = subparsers.add_parser(
        "enhance", help="rendered portraits -> photo-real, pasted back",
        description="Align, project into G_rendering, render with G_real and paste back each "
        "input. Inputs whose file stems collide are all kept, under distinct names (reported). "
        "Exit 1 when some inputs failed (see OUT/manifest.csv). Several processes, GPUs or "
        "machines: torchrun --nproc_per_node=N -m drfhq_lib enhance ... (each takes a share "
        "of the inputs; OUT on a file system all of them see).")
    p.add_argument("images", nargs="+", help="image files or folders")
    p.add_argument("--real", default=None,
                   help="G_real network file, or 'miniworld' (default: the official FFHQ "
                        "generator when installed, else the mini world's G_real_mini)")
    p.add_argument("--rendering", default=None,
                   help="G_rendering: a network file, a `drfhq finetune` run folder, or "
                        "'miniworld' (default: the mini world's when G_real is; required "
                        "with the official FFHQ generator)")
    _common_arguments(p, None)
    p.set_defaults(func=run_enhance, cmd="enhance")
    p = subparsers.add_parser("demo", help="enhance the bundled sample renders")
    p.add_argument("--rendering", default=None, help="G_rendering network file, if you have one")
    p.add_argument("--limit", type=int, default=3, help="how many sample portraits")
    _common_arguments(p, "out/demo")
    p.set_defaults(func=run_demo, cmd="demo", real=None)
