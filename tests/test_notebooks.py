"""Every notebook runs end to end through papermill with its CI parameters."""

import json

import pytest

from drfhq_lib import notebooks
from drfhq_lib.provenance import sidecar_path

PATHS = notebooks.notebook_paths()
TABLE_ONLY = {"00_networks"}  # its artefact is the table of networks this machine uses


def test_there_are_notebooks():
    assert PATHS, "notebooks/ has no NN_name.ipynb"


@pytest.mark.parametrize("nb", PATHS, ids=[p.stem for p in PATHS])
def test_notebook_is_committed_without_outputs(nb):
    assert not notebooks.has_outputs(nb), f"run `make clean-notebooks` to strip {nb.name}"


@pytest.mark.parametrize("nb", PATHS, ids=[p.stem for p in PATHS])
def test_notebook_has_parameters_cell(nb):
    cells = json.loads(nb.read_text())["cells"]
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1
    source = "".join(tagged[0]["source"])
    assert "figures_dir" in source and "results_dir" in source


@pytest.mark.notebook
@pytest.mark.parametrize("nb", PATHS, ids=[p.stem for p in PATHS])
def test_notebook_runs_and_writes_artefacts_with_provenance(nb, tmp_path):
    figures, results = tmp_path / "figures", tmp_path / "results"
    params = {**notebooks.ci_parameters(nb), "figures_dir": str(figures),
              "results_dir": str(results), "work_dir": str(tmp_path / "work")}
    notebooks.run_notebook(nb, tmp_path / nb.name, params, progress=False)
    artefacts = [p for p in [*figures.glob("*"), *results.glob("*")]
                 if p.is_file() and not p.name.endswith(".provenance.json")]
    assert artefacts, f"{nb.name} wrote nothing into figures_dir or results_dir"
    assert [p for p in results.glob(f"{nb.stem}.*") if p.suffix in (".csv", ".json")], \
        f"{nb.name}: no table results_dir/{nb.stem}.csv|json"
    if nb.stem not in TABLE_ONLY:
        assert (figures / f"{nb.stem}.png").is_file(), f"{nb.name}: no figure {nb.stem}.png"
    for artefact in artefacts:
        record = json.loads(sidecar_path(artefact).read_text())
        assert record["artifact"] == artefact.name
        assert record["params"], f"{artefact.name}: provenance without parameters"
        assert "networks" in record and "git_commit" in record
