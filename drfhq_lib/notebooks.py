"""Running the companion notebooks: full reproduction, CI parameters, output stripping.

Every notebook in ``notebooks/`` has a papermill ``parameters`` cell whose defaults are the full
reproduction, and ``notebooks/ci/<stem>.yaml`` with the small CPU parameters CI uses. Each
notebook takes ``figures_dir`` and ``results_dir`` parameters and writes its artefacts there,
each with a provenance sidecar; notebooks that run long jobs keep their working files in
``work_dir`` (under ``out/``, not committed).

The full reproduction writes ``figures/`` and ``results/`` (committed); a CI run
(:func:`plan_runs` with ``ci=True``) writes everything under ``out/reproduce-ci/``. The
command line is :mod:`drfhq_lib.commands.notebooks`.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from drfhq_lib.errors import DrfhqError
from drfhq_lib.files import write_text_atomic

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
#: Where ``reproduce --ci`` puts its stand-in artefacts (never figures/ or results/).
CI_OUT = ROOT / "out" / "reproduce-ci"
#: ``reproduce --artefacts``: the parameters of the committed figures/ and results/ (CI
#: parameters, enlarged where a CPU allows; figures_dir and results_dir set to the committed ones).
ARTEFACT_PARAMETERS = NOTEBOOK_DIR / "artefacts.yaml"
#: Where the full reproduction keeps the executed notebooks.
FULL_OUT = ROOT / "out" / "notebooks"
#: Parameters naming data a notebook reads (besides ``data*``): shown before a reproduction.
DATA_PARAMETERS = ("inputs", "image", "url_list", "fullbody_inputs")


def notebook_paths(folder: Path = NOTEBOOK_DIR) -> list[Path]:
    return sorted(folder.glob("[0-9]*.ipynb"))


def ci_parameters(notebook: Path) -> dict:
    path = notebook.parent / "ci" / f"{notebook.stem}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{notebook.name} has no CI parameters: create {path}")
    return yaml.safe_load(path.read_text()) or {}


def run_notebook(notebook: Path, output: Path, parameters: dict | None = None,
                 cwd: Path = ROOT, progress: bool = True) -> Path:
    """Execute ``notebook`` with papermill; any cell error raises papermill's error."""
    import papermill

    output.parent.mkdir(parents=True, exist_ok=True)
    papermill.execute_notebook(str(notebook), str(output), parameters=parameters or {},
                               kernel_name="python3", cwd=str(cwd), progress_bar=progress)
    return output


def has_outputs(notebook: Path) -> bool:
    cells = json.loads(notebook.read_text())["cells"]
    return any(c.get("outputs") or c.get("execution_count") for c in cells
               if c["cell_type"] == "code")


def strip_outputs(notebook: Path) -> bool:
    """Remove outputs and execution counts in place; True when the file changed."""
    nb = json.loads(notebook.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
        cell.get("metadata", {}).pop("execution", None)
        cell.get("metadata", {}).pop("papermill", None)
    nb.get("metadata", {}).pop("papermill", None)
    text = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
    if text == notebook.read_text():
        return False
    write_text_atomic(notebook, text)
    return True


@dataclass(frozen=True)
class Parameter:
    """One assignment of a notebook's ``parameters`` cell."""

    name: str
    default: str  # the source text of the value
    comment: str  # the line's ``#`` comment, if any

    @property
    def value(self):
        """The default as a Python value, where it is a literal (else its source text)."""
        try:
            return ast.literal_eval(self.default)
        except (ValueError, SyntaxError):
            return self.default


def parameters_cell(notebook: Path) -> str:
    cells = json.loads(Path(notebook).read_text())["cells"]
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    return "".join(tagged[0]["source"]) if tagged else ""


def notebook_parameters(notebook: Path) -> dict[str, Parameter]:
    """The parameters of a notebook (its ``parameters`` cell), in order."""
    source = parameters_cell(notebook)
    lines = source.splitlines()
    params: dict[str, Parameter] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 \
                and isinstance(node.targets[0], ast.Name):
            value = ast.get_source_segment(source, node.value) or ""
            rest = lines[node.end_lineno - 1][node.value.end_col_offset:]
            comment = rest.split("#", 1)[1].strip() if "#" in rest else ""
            params[node.targets[0].id] = Parameter(node.targets[0].id, value, comment)
    return params


def data_parameters(notebook: Path) -> list[Parameter]:
    """The parameters naming datasets or inputs the notebook reads: ``data*``, the names in
    DATA_PARAMETERS, and ``source`` where it is a folder (a string), not a network (None)."""
    return [p for p in notebook_parameters(notebook).values()
            if p.name.startswith("data") or p.name in DATA_PARAMETERS
            or (p.name == "source" and isinstance(p.value, str))]


def read_parameters_file(path: Path, stems: list[str]) -> tuple[dict, dict[str, dict]]:
    """A YAML file of parameters: ``name: value`` for every notebook that has the parameter,
    and ``NN_name: {name: value}`` for one notebook. Returns (shared, by notebook stem)."""
    path = Path(path)
    if not path.is_file():
        raise DrfhqError(f"--parameters {path}: no such file; write a YAML file of "
                         "`name: value` lines")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise DrfhqError(f"--parameters {path}: not valid YAML ({str(err).splitlines()[0]})")
    if not isinstance(data, dict):
        raise DrfhqError(f"--parameters {path}: expected a mapping of `name: value` lines")
    shared = {k: v for k, v in data.items() if k not in stems}
    per = {k: v for k, v in data.items() if k in stems}
    for stem, values in per.items():
        if not isinstance(values, dict):
            raise DrfhqError(f"--parameters {path}: {stem} must map parameter names to values")
    return shared, per


@dataclass
class Run:
    notebook: Path
    output: Path  # the executed copy
    parameters: dict


def plan_runs(paths: list[Path], ci: bool = False, shared: dict | None = None,
              per_notebook: dict[str, dict] | None = None) -> list[Run]:
    """What a reproduction runs: each notebook, where its executed copy goes, its parameters.

    ``ci``: the notebook's CI parameters, with ``figures_dir``, ``results_dir`` and (when the CI
    file leaves it unset) ``work_dir`` under :data:`CI_OUT`. ``shared``: values given to every
    notebook that declares the parameter; ``per_notebook``: values for one notebook (stem).
    A name no planned notebook declares is an error (a typo would otherwise run the defaults).
    """
    shared, per_notebook = dict(shared or {}), dict(per_notebook or {})
    runs, used = [], set()
    for nb in paths:
        declared = notebook_parameters(nb)
        params = ci_parameters(nb) if ci else {}
        if ci:
            params.update(figures_dir=str(CI_OUT / "figures"), results_dir=str(CI_OUT / "results"))
            if "work_dir" in declared and "work_dir" not in params:
                params["work_dir"] = str(CI_OUT / "work" / nb.stem)
        mine = {k: v for k, v in shared.items() if k in declared}
        used |= set(mine)
        extra = per_notebook.get(nb.stem, {})
        unknown = sorted(set(extra) - set(declared))
        if unknown:
            raise DrfhqError(f"{nb.name} has no parameter {', '.join(unknown)}; its parameters: "
                             f"{', '.join(declared)}")
        params.update(mine, **extra)
        output = (CI_OUT / "notebooks" if ci else FULL_OUT) / nb.name
        runs.append(Run(nb, output, params))
    unknown = sorted(set(shared) - used)
    if unknown:
        raise DrfhqError(f"no notebook to run has the parameter {', '.join(unknown)}; see each "
                         "notebook's parameters cell (`drfhq reproduce --dry-run` lists the data "
                         "ones)")
    return runs
