"""``drfhq dataset``: build a DRFHQ-style dataset from a URL list, step by step
(:mod:`drfhq_lib.data.dataset`)."""

from __future__ import annotations

from pathlib import Path

from drfhq_lib.commands import align
from drfhq_lib.commands.options import batch_exit_code, require_path


def run_download(args) -> int:
    from drfhq_lib.data.dataset import download_urls

    require_path(args.url_list, "URL_LIST", "file", "a text file with one URL (or URL NAME) a "
                 "line")
    report = download_urls(args.url_list, args.out, workers=args.workers, rate=args.rate,
                           retries=args.retries, timeout=args.timeout, overwrite=args.overwrite)
    print(f"dataset download: {report.summary()}")
    return batch_exit_code(report.failed)


def run_filter_apply(args) -> int:
    from drfhq_lib.data.dataset import apply_rejects

    require_path(args.rejects, "REJECTS", "file", "write it with the filtering grid of notebook "
                 "01, one file name a line")
    result = apply_rejects(args.source, args.rejects, move_to=args.move_to,
                           kept_list=args.kept_list)
    print(f"dataset filter-apply: {len(result.kept)} kept, {len(result.rejected)} rejected"
          + (f" (moved to {result.moved_to})" if result.moved_to else "")
          + (f"; {len(result.unknown)} names in the rejects list match no file"
             if result.unknown else ""))
    return 0


def run_pack(args) -> int:
    from drfhq_lib.data.dataset import pack_dataset

    if args.rejects is not None:
        require_path(args.rejects, "--rejects", "file", "leave --rejects out to pack every image")
    report = pack_dataset(args.source, args.out, args.resolution, rejects=args.rejects,
                          compress_level=args.compress_level)
    print(f"dataset pack: {report.summary()} -> {args.out}")
    return batch_exit_code(report.failed)


def add_cli(subparsers) -> None:
    p = subparsers.add_parser("dataset", help="build a DRFHQ-style dataset from a URL list")
    steps = p.add_subparsers(dest="step", required=True, metavar="STEP")

    d = steps.add_parser("download", help="download the images of a URL list")
    d.add_argument("url_list", type=Path, metavar="URL_LIST",
                   help="text file: one URL (optionally URL NAME) a line")
    d.add_argument("--out", required=True, type=Path, help="download folder")
    d.add_argument("--workers", type=int, default=8, help="parallel downloads (8)")
    d.add_argument("--rate", type=float, default=5.0,
                   help="requests per second across all workers (5; 0 = unlimited)")
    d.add_argument("--retries", type=int, default=3, help="retries per file (3)")
    d.add_argument("--timeout", type=float, default=30.0, help="seconds per socket operation")
    d.add_argument("--overwrite", action="store_true", help="download verified files again")
    d.set_defaults(func=run_download, cmd="dataset download")

    a = steps.add_parser("align", help="FFHQ-align the downloaded images (as `drfhq align`)")
    align.add_align_arguments(a)
    a.set_defaults(func=align.run, cmd="dataset align")

    f = steps.add_parser("filter-apply", help="apply a rejects list (from the filtering grid)")
    f.add_argument("source", type=Path, help="folder of aligned images, or its manifest.csv")
    f.add_argument("rejects", type=Path, metavar="REJECTS",
                   help="rejects file: one file name a line")
    f.add_argument("--move-to", type=Path, default=None, help="move rejected files here")
    f.add_argument("--kept-list", type=Path, default=None, help="write kept paths here")
    f.set_defaults(func=run_filter_apply, cmd="dataset filter-apply")

    k = steps.add_parser("pack", help="write a StyleGAN2-ADA dataset zip")
    k.add_argument("source", type=Path, help="folder of aligned images, or its manifest.csv")
    k.add_argument("--out", required=True, type=Path, help="zip file to write")
    k.add_argument("--resolution", type=int, default=1024, help="power of two (1024)")
    k.add_argument("--rejects", type=Path, default=None, help="rejects file to leave out")
    k.add_argument("--compress-level", type=int, default=6, help="PNG compression 0-9 (6)")
    k.set_defaults(func=run_pack, cmd="dataset pack")
