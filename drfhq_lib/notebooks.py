"""Running the companion notebooks: full reproduction, CI parameters, output stripping.

Every notebook in ``notebooks/`` has a papermill ``parameters`` cell whose defaults are the full
reproduction, and ``notebooks/ci/<stem>.yaml`` with the small CPU parameters CI uses. Each
notebook takes ``figures_dir`` and ``results_dir`` parameters and writes its artefacts there,
each with a provenance sidecar; notebooks that run long jobs keep their working files in
``work_dir`` (under ``out/``, not committed).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

from drfhq_lib.files import write_text_atomic

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"


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


def _cli(args) -> int:
    paths = notebook_paths()
    if args.strip:
        for nb in paths:
            if strip_outputs(nb):
                print(f"stripped {nb.relative_to(ROOT)}")
        return 0
    failed = []
    for nb in paths:
        if args.only and not any(key in nb.stem for key in args.only):
            continue
        params = ci_parameters(nb) if args.ci else {}
        out = ROOT / "out" / "notebooks" / nb.name
        print(f"running {nb.relative_to(ROOT)} -> {out.relative_to(ROOT)}", flush=True)
        try:
            run_notebook(nb, out, params)
        except Exception as err:  # keep going: one failing notebook must not hide the others
            print(f"FAILED {nb.name}: {str(err).splitlines()[0] if str(err) else err!r}",
                  file=sys.stderr)
            failed.append(nb.name)
    print(f"{len(paths) - len(failed)} notebooks ran, {len(failed)} failed "
          + (f"({', '.join(failed)})" if failed else ""))
    return 1 if failed else 0


def add_cli(subparsers) -> None:
    p = subparsers.add_parser("reproduce", help="run every notebook (full reproduction)")
    p.add_argument("--ci", action="store_true", help="use the small CI parameters")
    p.add_argument("--only", nargs="*", help="run notebooks whose name contains these")
    p.set_defaults(func=_cli, strip=False)
    p = subparsers.add_parser("notebooks", help="maintenance of the notebooks")
    p.add_argument("--strip", action="store_true", help="remove outputs before committing")
    p.set_defaults(func=_cli, ci=False, only=None)
