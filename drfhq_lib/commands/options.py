"""What every command shares: the parser class, the options that must mean the same in every
command (``--device``, ``--prefer``), the checks of file flags, and the exit-code rule."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from drfhq_lib.errors import DrfhqError

#: The exit-code rule of every command.
EXIT_OK = 0  # done, every item succeeded
EXIT_SOME_FAILED = 1  # done, but some items failed (their rows in the manifest say why)
EXIT_USAGE = 2  # a wrong flag or an expected error (DrfhqError): nothing, or not all, was done
EXIT_INTERRUPTED = 130  # Ctrl-C: rerun the same command to resume

EXIT_CODES_TEXT = f"""\
exit codes: {EXIT_OK} success; {EXIT_SOME_FAILED} finished, but some items failed (see the manifest);
{EXIT_USAGE} usage or expected error (one line: drfhq CMD: error: ...); {EXIT_INTERRUPTED} interrupted"""

#: The one default of ``--device``: resolved by :func:`device_of`.
DEFAULT_DEVICE = "auto"
DEVICE_HELP = "auto (default: cuda when available, else cpu), cpu, cuda, cuda:1 ..."
PREFER_CHOICES = ("auto", "official", "substitute")
PREFER_HELP = ("official networks of the paper, their labelled offline substitutes, or auto "
               "(official when installed; default)")


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line and exit with EXIT_USAGE."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}; see `{self.prog} --help`\n")


def batch_exit_code(failed: int) -> int:
    """The rule for a batch that finished: 0 when no item failed, else 1."""
    return EXIT_SOME_FAILED if failed else EXIT_OK


def add_device(parser, default=DEFAULT_DEVICE) -> None:
    parser.add_argument("--device", default=default, help=DEVICE_HELP)


def add_prefer(parser, default="auto") -> None:
    parser.add_argument("--prefer", default=default, choices=PREFER_CHOICES, help=PREFER_HELP)


def device_of(name: str, local_rank: int = 0):
    """``--device`` -> torch.device ('auto': cuda when available, else cpu; a bare cuda is
    ``cuda:local_rank``, this process's GPU under torchrun); an unusable device is an expected
    error naming the flag."""
    import torch

    from drfhq_lib.finetune.distributed import pick_device

    try:
        device = pick_device(name, local_rank)
    except RuntimeError as err:
        raise DrfhqError(f"--device {name}: {err}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DrfhqError(f"--device {name}: CUDA is not available on this machine; use "
                         "--device cpu (or auto)")
    return device


def require_path(path, flag: str, what: str, hint: str = "") -> Path:
    """``path`` when it exists, else an expected error naming the flag and the way out."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DrfhqError(f"{flag} {path}: no such {what}" + (f"; {hint}" if hint else ""))
    return path


def require_inputs(items, hint: str = "") -> list[Path]:
    """Image files/folders given on the command line: each must exist."""
    for item in items:
        require_path(item, "input", "file or folder", hint or "check the path")
    return [Path(i).expanduser() for i in items]


class Deprecated(argparse.Action):
    """A hidden old spelling of a flag: works, and says which spelling to use."""

    def __init__(self, option_strings, dest, use: str, **kwargs):
        self.use = use
        kwargs.setdefault("help", argparse.SUPPRESS)
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"{parser.prog}: warning: {option_string} is deprecated, use {self.use}",
              file=sys.stderr)
        setattr(namespace, self.dest, values)
