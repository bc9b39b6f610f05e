import json
import subprocess

import pytest

from drfhq_lib import provenance
from drfhq_lib.nets import weights


def test_sidecar_records_networks_params_commit(tmp_path, empty_weights):
    artefact = tmp_path / "tab1.csv"
    artefact.write_text("a,b\n1,2\n")
    nets = [weights.resolve("stylegan2-ffhq"), weights.resolve("dlib-landmarks68")]
    path = provenance.write_sidecar(artefact, nets, {"steps": 500, "size": 256})
    assert path == tmp_path / "tab1.csv.provenance.json"
    record = json.loads(path.read_text())
    assert record["artifact"] == "tab1.csv"
    assert record["params"] == {"steps": 500, "size": 256}
    by_name = {n["name"]: n for n in record["networks"]}
    assert by_name["stylegan2-ffhq"]["kind"] == "substitute"
    assert by_name["stylegan2-ffhq"]["label"] == "stylegan2-miniworld-P64"
    assert by_name["dlib-landmarks68"]["kind"] == "official"
    assert by_name["dlib-landmarks68"]["sha256"] == weights.NETWORKS["dlib-landmarks68"].sha256
    assert record["substitutes_used"] == ["stylegan2-miniworld-P64"]
    assert record["versions"]["drfhq"]
    assert record["git_commit"] == provenance.git_commit()


def test_git_commit_names_the_commit_and_marks_edits(tmp_path):
    run = lambda *a: subprocess.run(["git", *a], cwd=tmp_path, check=True, capture_output=True,
                                    text=True).stdout.strip()
    run("init", "-q")
    (tmp_path / "f.txt").write_text("1")
    run("add", "f.txt")
    run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "c")
    head = run("rev-parse", "HEAD")
    assert provenance.git_commit(tmp_path) == head
    (tmp_path / "f.txt").write_text("2")
    assert provenance.git_commit(tmp_path) == head + "-dirty"
    assert provenance.git_commit(tmp_path / "nonexistent") is None


def test_sidecar_needs_the_artefact_first(tmp_path):
    with pytest.raises(FileNotFoundError, match="before its provenance"):
        provenance.write_sidecar(tmp_path / "missing.png")


def test_figure_label_names_only_substitutes(empty_weights):
    nets = [weights.resolve("stylegan2-ffhq"), weights.resolve("dlib-landmarks68")]
    assert provenance.label_for_figure(nets) == "offline substitutes: stylegan2-miniworld-P64"
    assert provenance.label_for_figure(nets[1:]) == ""
