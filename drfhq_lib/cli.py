"""`python -m drfhq_lib <command>` and the `drfhq` console script.

Each command is a module of :mod:`drfhq_lib.commands` exposing ``add_cli(subparsers)`` (the
parser, ``func`` set to its ``run``); this file lists the modules and applies the exit-code
rule: 0 success, 1 finished but some items failed, 2 usage or expected error (one line
``drfhq CMD: error: ...``), 130 interrupted.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

from drfhq_lib.allocator import keep_freed_memory
from drfhq_lib.commands.options import (EXIT_CODES_TEXT, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE,
                                       Parser)
from drfhq_lib.errors import DrfhqError

COMMAND_MODULES = [
    "drfhq_lib.commands.weights",
    "drfhq_lib.commands.notebooks",
    "drfhq_lib.commands.align",
    "drfhq_lib.commands.dataset",
    "drfhq_lib.commands.finetune",
    "drfhq_lib.commands.enhance",
    "drfhq_lib.commands.encoder",
    "drfhq_lib.commands.study",
]
#: Commands of other parts of the package, registered when they are there:
#: module -> the function that adds the parser (the first of these it has).
OPTIONAL_COMMAND_MODULES = {
    "drfhq_lib.miniworld.cli": ("add_cli", "add_miniworld_parser"),
}


def command_adders() -> list:
    """The ``add_cli``-like function of every command module, in order."""
    adders = [importlib.import_module(m).add_cli for m in COMMAND_MODULES]
    for module, names in OPTIONAL_COMMAND_MODULES.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:  # its package is not there either
            found = False
        if found:
            mod = importlib.import_module(module)
            adders += [getattr(mod, n) for n in names if hasattr(mod, n)][:1]
    return adders


def build_parser() -> Parser:
    parser = Parser(prog="drfhq", description=__doc__.splitlines()[0], epilog=EXIT_CODES_TEXT)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in command_adders():
        add(subparsers)
    return parser


def _file_error(err: OSError) -> str:
    where = err.filename if err.filename is not None else ""
    return (f"{where}: {err.strerror or err}; check the path and its permissions"
            if where else f"{err.strerror or err}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    name = getattr(args, "cmd", None) or args.command
    if getattr(args, "needs_name", None) and getattr(args, "action", None) in args.needs_name \
            and not args.name:
        parser.error(f"{args.command} {args.action} needs a NAME")
    keep_freed_memory()  # every command is a long tensor job: see allocator.py
    try:
        return args.func(args) or EXIT_OK
    except DrfhqError as err:
        print(f"drfhq {name}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as err:
        print(f"drfhq {name}: error: {_file_error(err)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"drfhq {name}: interrupted; rerun the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
