"""`python -m drfhq_lib <command>` and the `drfhq` console script.

Each command lives beside the code it drives: a module exposes ``add_cli(subparsers)`` that
registers its sub-parser with ``func`` set; this file only lists the modules.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from drfhq_lib.allocator import keep_freed_memory
from drfhq_lib.errors import DrfhqError

COMMAND_MODULES = [
    "drfhq_lib.nets.weights",
    "drfhq_lib.notebooks",
    "drfhq_lib.data.align",
    "drfhq_lib.data.dataset",
    "drfhq_lib.finetune",
    "drfhq_lib.infer.enhance",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="drfhq", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        importlib.import_module(module).add_cli(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "needs_name", None) and getattr(args, "action", None) in args.needs_name \
            and not args.name:
        parser.error(f"{args.command} {args.action} needs a NAME")
    keep_freed_memory()  # every command is a long tensor job: see allocator.py
    try:
        return args.func(args) or 0
    except DrfhqError as err:
        print(f"drfhq {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"drfhq {args.command}: interrupted; rerun the same command to resume",
              file=sys.stderr)
        return 130
