"""``drfhq reproduce`` (run the notebooks) and ``drfhq notebooks`` (their maintenance);
the work is :mod:`drfhq_lib.notebooks`."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from drfhq_lib import notebooks
from drfhq_lib.commands.options import EXIT_USAGE, batch_exit_code
from drfhq_lib.errors import DrfhqError

PARAMETERS_HELP = """\
Pass notebook parameters with -p NAME VALUE (VALUE is read as YAML: 64, null, [1, 2], text), as
often as needed, or --parameters FILE.yaml (`name: value` lines; a `NN_name:` mapping gives
values to that notebook only). A value goes to every notebook whose parameters cell has the
name; a name no notebook has is an error."""


def _relative(path: Path) -> str:
    try:
        return str(Path(path).relative_to(notebooks.ROOT))
    except ValueError:
        return str(path)


def _mode_line(ci: bool, artefacts: bool) -> str:
    if artefacts:
        return ("Committed artefacts: CI parameters with the sizes of "
                f"{_relative(notebooks.ARTEFACT_PARAMETERS)}, mini-world networks; artefacts go "
                "to figures/ and results/ (each with a provenance sidecar).")
    if ci:
        return ("CI run: small parameters, stand-in networks; artefacts go to "
                f"{_relative(notebooks.CI_OUT)}/ (figures/ and results/ are not touched)")
    return ("Full reproduction: artefacts go to figures/ and results/ (each with a provenance "
            "sidecar); executed notebooks to out/notebooks/.")


def preface(runs: list[notebooks.Run], ci: bool, artefacts: bool = False) -> str:
    """What a reproduction needs (the datasets and inputs each notebook reads, with the values
    it will use) and how to change them."""
    lines = [_mode_line(ci, artefacts),
             "Data each notebook reads (parameter = value used; missing paths marked):"]
    for run in runs:
        needed = []
        for param in notebooks.data_parameters(run.notebook):
            value = run.parameters.get(param.name, param.value)
            mark = ""
            if isinstance(value, str) and not (notebooks.ROOT / Path(value).expanduser()).exists():
                mark = " (MISSING)"
            needed.append(f"{param.name} = {value!r}{mark}" + (
                f"  # {param.comment}" if param.comment and not ci else ""))
        lines.append(f"  {run.notebook.stem}: " + ("; ".join(needed) if needed else
                                                   "nothing beyond the networks"))
    lines += ["Networks: `drfhq weights` lists what each run would use.", PARAMETERS_HELP]
    return "\n".join(lines)


def _parse_value(text: str):
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def selected_notebooks(only: list[str] | None) -> list[Path]:
    paths = notebooks.notebook_paths()
    if only:
        paths = [nb for nb in paths if any(key in nb.stem for key in only)]
        if not paths:
            raise DrfhqError(f"--only {' '.join(only)}: matches no notebook; the notebooks: "
                             + ", ".join(p.stem for p in notebooks.notebook_paths()))
    return paths


def run_reproduce(args) -> int:
    paths = selected_notebooks(args.only)
    shared, per = {}, {}
    if args.artefacts:  # the CI parameters, enlarged by the committed file, into figures/
        args.ci = True
        if args.parameters is not None:
            raise DrfhqError("--artefacts takes its parameters from "
                             f"{_relative(notebooks.ARTEFACT_PARAMETERS)}; drop --parameters "
                             "(or use --ci --parameters FILE)")
        args.parameters = notebooks.ARTEFACT_PARAMETERS
    if args.parameters is not None:
        # every stem: a section for a notebook not selected by --only is not a parameter name
        shared, per = notebooks.read_parameters_file(
            args.parameters, [p.stem for p in notebooks.notebook_paths()])
    shared.update({name: _parse_value(value) for name, value in args.parameter or []})
    runs = notebooks.plan_runs(paths, ci=args.ci, shared=shared, per_notebook=per)
    print(preface(runs, args.ci, args.artefacts), flush=True)
    if args.dry_run:
        return 0
    failed = []
    for run in runs:
        print(f"running {_relative(run.notebook)} -> {_relative(run.output)}", flush=True)
        try:
            notebooks.run_notebook(run.notebook, run.output, run.parameters)
        except Exception as err:  # keep going: one failing notebook must not hide the others
            print(f"FAILED {run.notebook.name}: "
                  f"{str(err).splitlines()[0] if str(err) else repr(err)}", file=sys.stderr)
            failed.append(run.notebook.name)
    print(f"{len(runs) - len(failed)} notebooks ran, {len(failed)} failed"
          + (f" ({', '.join(failed)})" if failed else ""))
    return batch_exit_code(len(failed))


def run_notebooks(args) -> int:
    if not args.strip:
        args.parser.print_help()
        return EXIT_USAGE
    for nb in notebooks.notebook_paths():
        if notebooks.strip_outputs(nb):
            print(f"stripped {_relative(nb)}")
    return 0


def add_cli(subparsers) -> None:
    p = subparsers.add_parser(
        "reproduce", help="run every notebook (full reproduction; --ci for the small run)",
        description="Run the companion notebooks with papermill. Before starting it lists the "
        "datasets each notebook reads. " + PARAMETERS_HELP)
    p.add_argument("--ci", action="store_true",
                   help=f"the small CI parameters; writes under {_relative(notebooks.CI_OUT)}/")
    p.add_argument("--artefacts", action="store_true",
                   help="regenerate the committed figures/ and results/ on the mini world: the "
                   "CI parameters enlarged by notebooks/artefacts.yaml")
    p.add_argument("--only", nargs="+", metavar="KEY",
                   help="run notebooks whose name contains one of these")
    p.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"),
                   help="a notebook parameter (repeatable)")
    p.add_argument("--parameters", type=Path, metavar="FILE.yaml",
                   help="notebook parameters from a YAML file")
    p.add_argument("--dry-run", action="store_true",
                   help="print what would run, with which data, and stop")
    p.set_defaults(func=run_reproduce, cmd="reproduce")
    p = subparsers.add_parser(
        "notebooks", help="maintenance of the notebooks (--strip)",
        description="Maintenance of the notebooks. Without a flag this prints this help and "
        f"exits with {EXIT_USAGE}; to run them, use `drfhq reproduce`.")
    p.add_argument("--strip", action="store_true", help="remove outputs before committing")
    p.set_defaults(func=run_notebooks, cmd="notebooks", parser=p)
