"""The enhance pipeline end to end on a bundled render, with the mini world's networks (the
default without the paper's) and with untrained stand-ins where no trained network exists."""

import csv

import pytest
from PIL import Image

from drfhq_lib.infer import enhance
from drfhq_lib.infer.projection import ProjectionParams, load_latent


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("enhance")
    bad = out.parent / "not_an_image.png"
    bad.write_text("hello")
    render = enhance.SAMPLES / "kenji_portrait.png"
    nets = enhance.load_generators(None, None, "cpu", allow_untrained=True, untrained_size=32)
    params = ProjectionParams(steps=2, w_avg_samples=1000)
    rows = enhance.enhance_files([render, bad], out, nets, params, batch=2, progress=False)
    return out, render, bad, nets, params, rows


def _manifest(out):
    with open(out / "manifest.csv", newline="") as f:
        return {row["input"]: row for row in csv.DictReader(f)}


def test_writes_composite_comparison_latent_and_manifest(run):
    out, render, bad, _, _, rows = run
    final = Image.open(out / "kenji_portrait.png")
    assert final.size == Image.open(render).size  # pasted back into the full render
    assert (out / "compare" / "kenji_portrait.png").exists()
    assert (out / "latents" / "kenji_portrait.npz").exists()
    manifest = _manifest(out)
    assert manifest[str(render)]["status"] == "ok"
    assert float(manifest[str(render)]["final_lpips"]) > 0
    assert rows == manifest


def test_a_bad_input_is_reported_and_does_not_stop_the_batch(run):
    out, _, bad, _, _, _ = run
    row = _manifest(out)[str(bad)]
    assert row["status"] == "failed" and "not_an_image.png" in row["reason"]


def test_rerun_skips_finished_outputs(run):
    out, render, _, nets, params, _ = run
    stamp = (out / "kenji_portrait.png").stat().st_mtime_ns
    rows = enhance.enhance_files([render], out, nets, params, progress=False)
    assert (out / "kenji_portrait.png").stat().st_mtime_ns == stamp
    assert rows[str(render)]["status"] == "ok"  # the earlier row is kept


def test_resuming_with_other_settings_is_refused(run, tmp_path):
    import dataclasses
    import shutil

    from drfhq_lib.errors import DrfhqError

    out, render, _, nets, params, _ = run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    longer = dataclasses.replace(params, steps=params.steps + 1)
    with pytest.raises(DrfhqError, match=r"other settings \(projection.steps: 2 -> 3; see "):
        enhance.enhance_files([render], copy, nets, longer, progress=False)
    with pytest.raises(DrfhqError, match="init: 'w_avg' -> 'encoder'"):  # any start but w_avg
        enhance.enhance_files([render], copy, nets, params, progress=False,
                              init=lambda targets: None)
    stamp = (copy / "kenji_portrait.png").stat().st_mtime_ns
    enhance.enhance_files([render], copy, nets, longer, overwrite=True, progress=False)
    assert (copy / "kenji_portrait.png").stat().st_mtime_ns != stamp  # redone ...
    assert load_latent(copy / "latents" / "kenji_portrait.npz")["steps"] == longer.steps
    enhance.enhance_files([render], copy, nets, longer, progress=False)  # ... and resumable

    def encoder_start(digest):  # a start as load_encoder_init makes it: with its file's sha256
        def init(targets):
            return None  # (None: w_avg; only the recorded setting matters here)
        init.sha256 = digest
        return init
    enhance.enhance_files([render], copy, nets, longer, overwrite=True, progress=False,
                          init=encoder_start("a" * 64))
    with pytest.raises(DrfhqError, match=f"init: 'encoder sha256:{'a' * 64}' -> 'encoder "
                                         f"sha256:{'b' * 64}'"):  # a retrained encoder
        enhance.enhance_files([render], copy, nets, longer, progress=False,
                              init=encoder_start("b" * 64))


def test_without_the_papers_networks_the_mini_world_is_used_and_labelled(run):
    nets = run[3]
    assert nets.trained and nets.world == "miniworld"
    assert "mini world (CG→CG), not the paper's FFHQ networks" in nets.real_label
    assert [r.name for r in nets.resolved] == ["stylegan2-miniworld-P64", "stylegan2-miniworld-R64"]
    assert nets.G_real.img_resolution == 64 and nets.G_rendering is not nets.G_real


def test_untrained_stand_ins_only_where_no_trained_network_exists(monkeypatch):
    monkeypatch.setattr(enhance, "_mini_world_available", lambda: False)
    nets = enhance.load_generators(None, None, "cpu", allow_untrained=True, untrained_size=32)
    assert not nets.trained and "UNTRAINED" in nets.real_label and nets.world == ""


def test_official_generator_is_required_outside_the_demo(empty_weights):
    from drfhq_lib.errors import MissingWeightsError

    with pytest.raises(MissingWeightsError, match="ffhq.pkl"):
        enhance.load_generators(None, "rendering.safetensors", "cpu")


def test_colliding_stems_are_all_enhanced_under_distinct_names(tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "face.png").write_bytes(
            (enhance.SAMPLES / "kenji_portrait.png").read_bytes())
    inputs = [tmp_path / "a" / "face.png", tmp_path / "b" / "face.png"]
    assert enhance.renamed_inputs(inputs) == {inputs[0]: "a_face_png", inputs[1]: "b_face_png"}
    nets = enhance.load_generators(None, None, "cpu", allow_untrained=True, untrained_size=32)
    rows = enhance.enhance_files(inputs, tmp_path / "out", nets,
                                 ProjectionParams(steps=1, w_avg_samples=100), batch=2,
                                 progress=False)
    assert [rows[str(p)]["status"] for p in inputs] == ["ok", "ok"]
    assert {p.name for p in (tmp_path / "out").glob("*.png")} == {"a_face_png.png",
                                                                  "b_face_png.png"}
    assert "another input has the stem 'face'" in rows[str(inputs[0])]["reason"]


def test_output_names_keep_unique_stems():
    paths = [enhance.SAMPLES / "x.png", enhance.SAMPLES / "x.jpg", enhance.SAMPLES / "y.png"]
    assert enhance.output_names(paths + paths[:1]) == {paths[0]: "x_png", paths[1]: "x_jpg",
                                                       paths[2]: "y"}


def test_figure_caption_says_untrained_mini_world_and_substitutes():
    from drfhq_lib.nets.weights import Resolved

    sub = Resolved("lpips-vgg16", "substitute", "lpips-vgg16[hed-trunk]", None, None)
    off = Resolved("bisenet-faceparse", "official", "bisenet-faceparse", None, None)

    def nets(trained, world):
        return enhance.Networks(None, None, "r", "g", trained, world=world)

    assert nets(True, "").caption([off]) == ""  # the paper's networks: nothing to say
    assert nets(True, "miniworld").caption([off, sub]) == \
        "mini world (CG→CG), not the paper's FFHQ networks; " \
        "offline substitutes: lpips-vgg16[hed-trunk]"
    assert nets(False, "").caption([]).startswith("UNTRAINED")
