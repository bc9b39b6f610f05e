"""Every notebook runs end to end through papermill with its CI parameters."""

import csv
import json

import pytest

from drfhq_lib import notebooks
from drfhq_lib.provenance import sidecar_path

PATHS = notebooks.notebook_paths()
TABLE_ONLY = {"00_networks"}  # its artefact is the table of networks this machine uses

# What each notebook's table must hold under its CI parameters (notebooks/ci/<stem>.yaml):
# "columns" that must be present, "rows" (an int, or a function of the CI parameters), and
# "trained": the value every row's (or the JSON's) `trained` flag must have: True where the CI
# run uses the mini world's trained networks, False where only untrained stand-ins exist.
PORTRAITS_IN_CI = 2  # `limit: 2` of samples/renders/*_portrait.png
TABLES = {
    "00_networks": {"columns": {"network", "use", "label", "found", "sha256"},
                    "rows": lambda p: len(__import__("drfhq_lib.nets.weights",
                                                     fromlist=["NETWORKS"]).NETWORKS)},
    "01_dataset_prep": {"columns": {"status", "count", "files", "reason"}},
    "02_finetune": {"keys": {"snapshots", "kimg", "p", "losses", "identity", "history",
                             "untrained_source", "network_file"},
                    "json": lambda t, p: (t["untrained_source"] is not p.get("miniworld", False)
                                          and t["snapshots"] >= round(p["kimg"] / p["snap"])
                                          and len(t["history"]) == t["snapshots"])},
    "03_inference": {"columns": {"input", "status", "reason", "seconds"},
                     "rows": lambda p: p["limit"]},
    "04_shared_latent": {"columns": {"latent", "compared", "lpips", "l2", "identity_similarity",
                                     "faces_found", "reason", "trained"},
                         "latents": lambda p: len(p["seeds"]) + p["limit"], "trained": True},
    "05_latent_explorer": {"keys": {"device", "G_real", "G_rendering", "trained",
                                    "preview_seconds"}, "trained": True},
    # one row per input and SDEdit seed ("not run" without a diffusion checkpoint) + ours
    "06_sdedit": {"columns": {"label", "method", "input", "seed", "status", "reason",
                              "start_timestep", "trained"},
                  "rows": lambda p: PORTRAITS_IN_CI * (len(p["seeds"]) + 1), "trained": True},
    "07_inversion_baselines": {"columns": {"label", "method", "input", "status", "trained"},
                               "rows": lambda p: PORTRAITS_IN_CI * len(p["methods"]),
                               "trained": True},
    # G_real, StyleGAN-NADA and AgileGAN (not run in CI: no files), ours
    "09_style_transfer": {"columns": {"trained", "distance_metric", "distance_noise"},
                          "rows": lambda p: 4, "trained": True},
    "10_loss_ablation": {"columns": {"trained", "sketch", "color"}, "rows": lambda p: 5,
                         "trained": True},
    "11_framework_ablation": {"columns": {"label", "method", "input", "status", "trained"},
                              "rows": lambda p: PORTRAITS_IN_CI * len(p["methods"]),
                              "trained": True},
    "12_inversion_ablation": {"columns": {"label", "method", "input", "status", "trained"},
                              "rows": lambda p: PORTRAITS_IN_CI * len(p["methods"]),
                              "trained": True},
    # one row per Tab. 3 protocol and dataset (DHF, DRFHQ)
    "13_dataset_ablation": {"columns": {"trained", "protocol", "size_px", "lpips", "l2",
                                        "lpips_note"},
                            "rows": lambda p: 2 * len(p["protocols"]), "trained": False},
    "14_failure_cases": {"columns": {"category", "input", "status", "trained"},
                         # one row per category and input; an empty category is a "not run" row
                         "rows": lambda p: sum(max(1, len(v)) for v in p["categories"].values()),
                         "trained": True},
    # the mini world: 7 methods + 2 reference rows + dlib's floor on the P renders
    "16_miniworld_groundtruth": {"columns": {"method", "n", "lpips", "psnr", "landmarks",
                                             "lpips_ci_low", "lpips_ci_high", "trained"},
                                 "rows": lambda p: 10, "trained": True},
    # Fig. 5 / 16: one row per full-body render (`limit` of samples/renders/*_body*), the
    # mini world's trained networks
    "17_fullbody": {"columns": {"input", "status", "final_lpips", "pixels_mask_soft",
                                "max_change_outside", "face_box", "trained"},
                    "rows": lambda p: p["limit"], "trained": True},
    # Fig. 6: one choice among ours + the listed methods per set (chance 1/7); Fig. 15: pairs
    "15_user_study": {"keys": {"simulated", "studies"},
                      "json": lambda t, p: (t["simulated"] is True
                                            and set(t["studies"]) == {"inversion", "fullbody"}
                                            and t["studies"]["inversion"]["methods"] == p["methods"]
                                            and abs(t["studies"]["inversion"]["chance"]
                                                    - 1 / (len(p["methods"]) + 1)) < 1e-12
                                            and t["studies"]["fullbody"]["chance"] == 0.5)},
}


def _falsy_flag(value) -> bool:
    return str(value).strip().lower() in ("false", "0", "no")


def check_table(stem: str, results, params: dict) -> None:
    """The checks of TABLES[stem] on results/<stem>.csv|json (read back from disk)."""
    spec = TABLES.get(stem, {})
    csv_path, json_path = results / f"{stem}.csv", results / f"{stem}.json"
    if csv_path.is_file():
        with open(csv_path, newline="") as f:
            reader = csv.DictReader(f)
            columns, rows = set(reader.fieldnames or []), list(reader)
        assert rows, f"{csv_path.name}: no rows"
        assert "" not in columns and None not in columns, f"{csv_path.name}: a nameless column"
        missing = spec.get("columns", set()) - columns
        assert not missing, f"{csv_path.name}: columns {sorted(missing)} missing from {sorted(columns)}"
        assert all(None not in r for r in rows), f"{csv_path.name}: a row longer than the header"
        if "rows" in spec:
            assert len(rows) == spec["rows"](params), f"{csv_path.name}: {len(rows)} rows"
        if "latents" in spec:
            assert len({r["latent"] for r in rows}) == spec["latents"](params)
        if "trained" in spec:
            flags = [r["trained"] for r in rows if r.get("status") != "not run"]
            assert all(_falsy_flag(v) for v in flags) if spec["trained"] is False else \
                not any(_falsy_flag(v) for v in flags), f"{csv_path.name}: trained = {flags}"
    else:
        table = json.loads(json_path.read_text())
        missing = spec.get("keys", set()) - set(table)
        assert not missing, f"{json_path.name}: keys {sorted(missing)} missing"
        if "trained" in spec:
            assert table["trained"] is spec["trained"], f"{json_path.name}: trained"
        if "json" in spec:
            assert spec["json"](table, params), f"{json_path.name}: {table}"


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
    defaults = {k: v.value for k, v in notebooks.notebook_parameters(nb).items()}
    params = {**defaults, **notebooks.ci_parameters(nb), "figures_dir": str(figures),
              "results_dir": str(results), "work_dir": str(tmp_path / "work")}
    notebooks.run_notebook(nb, tmp_path / nb.name, params, progress=False)
    artefacts = [p for p in [*figures.glob("*"), *results.glob("*")]
                 if p.is_file() and not p.name.endswith(".provenance.json")]
    assert artefacts, f"{nb.name} wrote nothing into figures_dir or results_dir"
    assert [p for p in results.glob(f"{nb.stem}.*") if p.suffix in (".csv", ".json")], \
        f"{nb.name}: no table results_dir/{nb.stem}.csv|json"
    check_table(nb.stem, results, params)
    if nb.stem not in TABLE_ONLY:
        assert (figures / f"{nb.stem}.png").is_file(), f"{nb.name}: no figure {nb.stem}.png"
    for artefact in artefacts:
        record = json.loads(sidecar_path(artefact).read_text())
        assert record["artifact"] == artefact.name
        assert record["params"], f"{artefact.name}: provenance without parameters"
        assert "networks" in record and "git_commit" in record


def test_every_notebook_with_a_table_has_a_table_spec():
    # 08 writes a JSON of parameters only
    assert {p.stem for p in PATHS} - {"08_postprocess"} <= set(TABLES)


def test_table_checker_catches_a_mislabelled_or_short_table(tmp_path):
    # the checker itself, on hand-written tables: it must fail where the notebook would be wrong
    params = {"seeds": [0, 1], "limit": 1}
    header = "latent,compared,lpips,l2,identity_similarity,faces_found,reason,trained\n"
    good = header + "seed0,pair,0.1,0.2,0.9,True,,True\nseed1,pair,0.1,0.2,0.9,True,,True\n" \
        "p0,pair,0.1,0.2,0.9,True,,True\n"
    (tmp_path / "04_shared_latent.csv").write_text(good)
    check_table("04_shared_latent", tmp_path, params)
    (tmp_path / "04_shared_latent.csv").write_text(good.replace("True,,True\np0", "True,,False\np0"))
    with pytest.raises(AssertionError, match="trained"):
        check_table("04_shared_latent", tmp_path, params)
    (tmp_path / "04_shared_latent.csv").write_text(good.rsplit("p0", 1)[0])
    with pytest.raises(AssertionError):
        check_table("04_shared_latent", tmp_path, params)
    (tmp_path / "04_shared_latent.csv").write_text(header.replace(",l2", "") + "a,b,c,d,e,f,g\n")
    with pytest.raises(AssertionError, match="l2"):
        check_table("04_shared_latent", tmp_path, params)


def test_artefact_parameters_name_declared_parameters_and_write_the_committed_folders():
    paths = notebooks.notebook_paths()
    shared, per = notebooks.read_parameters_file(notebooks.ARTEFACT_PARAMETERS,
                                                 [p.stem for p in paths])
    runs = notebooks.plan_runs(paths, ci=True, shared=shared, per_notebook=per)  # raises on a typo
    assert {r.parameters["figures_dir"] for r in runs} == {"figures"}
    assert {r.parameters["results_dir"] for r in runs} == {"results"}
    assert set(per) <= {p.stem for p in paths}
