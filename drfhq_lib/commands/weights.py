"""``drfhq weights``: list, fetch and install the pretrained networks of the registry
(:mod:`drfhq_lib.nets.weights`)."""

from __future__ import annotations

from pathlib import Path

from drfhq_lib.commands.options import PREFER_CHOICES, PREFER_HELP
from drfhq_lib.nets import weights


def hand_download_lines() -> list[str]:
    """For each network that is not installed and that ``fetch`` cannot get: where to
    download it by hand, its file name and folder."""
    used = {row["network"]: row["use"] for row in weights.status_rows()}
    lines = []
    for net in weights.NETWORKS.values():
        how = weights.download_by_hand(net)
        if how and used.get(net.name) != "official":
            lines.append(f"  {net.name}: {how}")
    return lines


def run(args) -> int:
    if args.action == "fetch":
        print(weights.fetch(args.name, args.to))
    elif args.action == "install-substitutes":
        for path in weights.install_substitutes(args.to):
            print(path)
    elif args.action == "path":
        print(weights.resolve(args.name, args.prefer).path)
    else:
        print(f"weights folder: {weights.weights_dir()} (set ${weights.WEIGHTS_ENV} to change)")
        print(weights.format_table(weights.status_rows()))
        manual = hand_download_lines()
        if manual:
            print("\nDownload by hand (`drfhq weights fetch` cannot; the substitutes above are "
                  "used until then):")
            print("\n".join(manual))
    return 0


def add_cli(subparsers) -> None:
    p = subparsers.add_parser("weights", help="list, fetch and install pretrained networks",
                              description="List the networks a run would use (official or "
                              "substitute), fetch official files, install the substitutes.")
    p.add_argument("action", nargs="?", default="list",
                   choices=["list", "fetch", "install-substitutes", "path"])
    p.add_argument("name", nargs="?", metavar="NAME",
                   help="network name (for fetch and path): " + ", ".join(weights.NETWORKS))
    p.add_argument("--to", type=Path, default=None, help="folder (default: the weights folder)")
    p.add_argument("--prefer", default="auto", choices=PREFER_CHOICES, help=PREFER_HELP)
    p.set_defaults(func=run, needs_name=("fetch", "path"))
