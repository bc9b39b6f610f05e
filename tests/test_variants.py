"""Named generator variants (drfhq_lib.eval.variants) on tiny CPU networks: loading files and run
folders, "not run" records, training on request and reuse, the same latents through several
generators, Fig. 10's loss switches and Tab. 3's pair metrics."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from drfhq_lib import finetune
from drfhq_lib.eval import variant_figures, variant_files, variants
from drfhq_lib.errors import MissingWeightsError
from drfhq_lib.finetune import snapshots
from drfhq_lib.nets import load_network
from conftest import TinyLPIPS, TinySketch

RES = 16
TINY_NETS = {"sketch_net": TinySketch(), "lpips_net": TinyLPIPS()}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("variants-inputs")
    return {"source": finetune.make_tiny_source(folder / "source.safetensors", RES, channels=16),
            "other": finetune.make_tiny_source(folder / "other.safetensors", RES, channels=16,
                                               seed=1),
            "source32": finetune.make_tiny_source(folder / "s32.safetensors", 32, channels=16),
            "data": finetune.make_tiny_dataset(folder / "data.zip", RES, count=4)}


def config(files, out, **changes) -> finetune.FinetuneConfig:
    settings = dict(source=str(files["source"]), data=str(files["data"]), out=str(out),
                    kimg=0.004, batch=4, snap=0.004, ema_kimg=0.001, sketch=False, color=False,
                    sketch_size=RES, color_size=RES, device="cpu", identity=False, grid_size=2,
                    progress=False, workers=0)
    settings.update(changes)
    return finetune.FinetuneConfig(**settings)


@pytest.fixture(scope="module")
def run(files, tmp_path_factory):
    """One finished tiny run (one step)."""
    out = tmp_path_factory.mktemp("variants-run") / "run"
    variant = variant_files.finetuned_variant("run", config(files, out), train=True, log=None)
    assert variant.status == variants.OK
    return out, variant


def _states_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_run_folder_and_its_network_file_load_the_same_generator(run):
    out, _ = run
    from_folder = variant_files.file_variant("f", out)
    network_file = snapshots.latest_snapshot(out).network_file
    from_file = variant_files.file_variant("n", network_file)
    assert from_folder.status == from_file.status == variants.OK
    assert from_folder.network_file == from_file.network_file == str(network_file)
    assert _states_equal(from_folder.G, from_file.G)
    assert _states_equal(from_file.G, load_network(network_file)["G_ema"])
    assert from_folder.kimg == pytest.approx(0.004) and from_file.kimg is None
    # fine-tuned from the untrained tiny source: never presented as trained
    assert not from_folder.trained and not from_file.trained


def test_source_variant_is_g_ema_and_names_the_untrained_stand_in(files):
    real = variant_files.source_variant(files["source"])
    assert _states_equal(real.G, load_network(files["source"])["G_ema"])
    assert not real.trained
    assert [r.label for r in real.resolved] == ["stylegan2-untrained-small"]


def test_official_g_real_missing_is_an_error_saying_how_to_get_it(empty_weights):
    with pytest.raises(MissingWeightsError, match="ffhq.pkl"):
        variant_files.source_variant(None)


def test_a_third_party_network_file_counts_as_trained(files, tmp_path):
    from drfhq_lib.nets import save_network

    G = load_network(files["other"])["G_ema"]
    save_network(tmp_path / "nada.safetensors", {"G_ema": G})  # no 'untrained' mark
    nada = variant_files.file_variant("StyleGAN-NADA", tmp_path / "nada.safetensors")
    assert nada.status == variants.OK and nada.trained and _states_equal(nada.G, G)
    assert variant_files.variant_record(nada)["sha256"] is not None


def test_missing_things_are_not_run_with_the_reason(files, tmp_path):
    nada = variant_files.file_variant("NADA", None, needs="set nada to a .pt")
    assert (nada.status, nada.G) == (variants.NOT_RUN, None)
    assert "no generator file given" in nada.reason and "set nada to a .pt" in nada.reason
    gone = variant_files.file_variant("AgileGAN", tmp_path / "agile.pt")
    assert gone.status == variants.NOT_RUN and "agile.pt: not found" in gone.reason
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    assert "unreadable" in variant_files.file_variant("x", broken).reason
    missing_run = variant_files.generator_variant("ours", tmp_path / "no-run",
                                             config(files, ""), train=False)
    assert missing_run.status == variants.NOT_RUN
    assert "no-run" in missing_run.reason and "train=True" in missing_run.reason
    assert not (tmp_path / "no-run").exists()  # nothing was trained
    row = missing_run.as_row()
    assert row["status"] == "not run" and row["reason"] == missing_run.reason


def test_unfinished_run_is_not_run_without_train(files, run, tmp_path):
    out, _ = run
    longer = variant_files.finetuned_variant("r", config(files, out, kimg=0.008), train=False)
    assert longer.status == variants.OK  # without train, a run counts as finished at its kimg
    unfinished = tmp_path / "unfinished"
    variant_files.finetuned_variant("u", config(files, unfinished), train=True, log=None)
    state = snapshots.latest_snapshot(unfinished).state_file
    stored = snapshots.read_state(state)
    stored["config"]["kimg"] = 0.008  # as if stopped half way
    snapshots.write_state(state, {k: v for k, v in stored.items() if k != "format"})
    record = variant_files.run_folder_variant("u", unfinished)
    assert record.status == variants.NOT_RUN
    assert "stopped at 0.004 of 0.008 kimg" in record.reason and "train=True" in record.reason


def test_train_then_rerun_reuses_the_run_and_a_longer_one_resumes(files, tmp_path):
    out = tmp_path / "ours"
    first = variant_files.generator_variant("ours", out, config(files, ""), train=True)
    assert first.status == variants.OK and first.kimg == pytest.approx(0.004)
    written = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = variant_files.generator_variant("ours", out, config(files, ""), train=True)
    assert again.network_file == first.network_file
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == written  # nothing retrained
    longer = variant_files.generator_variant("ours", out, config(files, "", kimg=0.008), train=True)
    assert longer.kimg == pytest.approx(0.008)
    assert snapshots.snapshot_nimgs(out) == [8, 4]  # resumed from the first snapshot


def test_a_folder_trained_with_other_settings_is_not_reused(files, run):
    out, _ = run
    other = variant_files.finetuned_variant("full", config(files, out, sketch=True, color=True),
                                       train=True, networks=TINY_NETS)
    assert other.status == variants.NOT_RUN and "sketch" in other.reason
    expected = variant_files.run_folder_variant("full", out, expect=variants.LOSS_ABLATION["full"])
    assert expected.status == variants.NOT_RUN and "'sketch': False" in expected.reason


def test_loss_ablation_switches_reach_each_run(files, tmp_path):
    base = config(files, "", sketch=True, color=True)
    folders = {name: tmp_path / name for name in variants.LOSS_ABLATION}
    configs = variants.loss_ablation_configs(base, folders)
    assert {n: (c.sketch, c.color, c.out) for n, c in configs.items()} == {
        "baseline": (False, False, str(folders["baseline"])),
        "no_sketch": (False, True, str(folders["no_sketch"])),
        "no_color": (True, False, str(folders["no_color"])),
        "full": (True, True, str(folders["full"]))}
    for name in ("no_sketch", "no_color"):
        variant = variant_files.finetuned_variant(name, configs[name], True, networks=TINY_NETS,
                                             expect=variants.LOSS_ABLATION[name], log=None)
        assert variant.status == variants.OK
        stored = snapshots.latest_snapshot(folders[name]).state["config"]
        assert (stored["sketch"], stored["color"]) == (configs[name].sketch, configs[name].color)
        logged = finetune.read_log(folders[name])[-1]["losses"]
        assert {"sketch", "color"} & set(logged) == {k for k in ("sketch", "color")
                                                      if stored[k]}


def test_same_latents_through_identical_and_different_generators(files):
    real = variant_files.source_variant(files["source"])
    twin = variant_files.source_variant(files["source"], name="twin")
    other = variant_files.source_variant(files["other"], name="other")
    images = variants.render_same_latents(real, [real, twin, other], count=3, seed=5)
    assert torch.equal(images["StyleGAN2-FFHQ"], images["twin"])
    assert not torch.allclose(images["StyleGAN2-FFHQ"], images["other"])
    # The official convention, written out here: latent i is RandomState(seed + i).randn(z_dim).
    z = np.stack([np.random.RandomState(5 + i).randn(real.G.z_dim) for i in range(3)])
    ws = real.G.mapping(torch.from_numpy(z).float(), None)
    assert torch.allclose(images["other"], other.G.synthesis(ws, noise_mode="const"))
    lpips = TinyLPIPS()
    lpips.label = "tiny"
    same = variants.paired_metrics(real, twin, 5, batch=2, lpips_net=lpips)
    assert (same["lpips"], same["l2"], same["n_pairs"]) == (0.0, 0.0, 5)
    apart = variants.paired_metrics(real, other, 5, batch=2, lpips_net=lpips)
    assert apart["n_pairs"] == 5 and apart["lpips"] > 0 and apart["l2"] > 0


def test_incompatible_and_missing_generators_become_not_run_cells(files):
    real = variant_files.source_variant(files["source"])
    big = variant_files.source_variant(files["source32"], name="big")
    kept = variants.in_same_space(real, [real, big, variants.not_run("NADA", "no file")])
    assert [v.status for v in kept] == [variants.OK, variants.NOT_RUN, variants.NOT_RUN]
    assert "not the same latent space" in kept[1].reason
    images = variants.render_same_latents(real, kept, 2)
    assert images["big"] is None and images["NADA"] is None
    fig = variant_figures.comparison_figure(kept, images)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert sum(t.startswith("not run") for t in texts) == 4  # 2 generators x 2 latents
    assert any("no file" in t for t in texts)


def test_comparison_row_keeps_columns_and_never_invents_a_distance(files):
    from drfhq_lib.nets.identity import build_embedder

    real = variant_files.source_variant(files["source"])
    missing = variants.not_run("NADA", "no file")
    try:
        embedder = build_embedder("substitute")
    except MissingWeightsError as err:
        pytest.skip(f"dlib models not installed: {err}")
    datasets = {"drfhq": files["data"], "ffhq": None}
    rows = [variants.comparison_row(real, v, 2, datasets, 4, 2, prefer="substitute",
                                    embedder=embedder) for v in (real, missing)]
    assert list(rows[0]) == list(rows[1])
    # 16 px untrained samples hold no face: FD-dlib cannot be computed and says why
    assert rows[0]["distance_drfhq"] == "" and rows[0]["distance_metric"] == "FD-dlib"
    note = rows[0]["distance_note"]
    assert "faces" in note and "ffhq: no dataset given" in note
    assert (rows[0]["n_samples_drfhq"], rows[0]["n_samples_ffhq"]) == (4, 0)
    assert rows[1]["n_samples_drfhq"] == 0 and rows[1]["identity_similarity"] == ""
    assert rows[0]["trained"] is False
    assert rows[0]["distance_noise"] == rows[1]["distance_noise"] == "random"  # the official


def test_pair_row_on_known_pairs():
    lpips = TinyLPIPS()
    lpips.label = "tiny"
    a = torch.zeros(1, 3, 8, 8)
    row = variants.pair_row([(a, a + 0.5), (a, a)], lpips)
    assert row["n_pairs"] == 2
    assert row["l2"] == pytest.approx(0.125)  # (0.25 + 0) / 2, images in [-1, 1]
    assert row["mse_01"] == pytest.approx(0.125 / 4)  # the same difference in [0, 1] units
    assert row["lpips"] > 0
    empty = variants.pair_row([], lpips)
    assert empty["n_pairs"] == 0 and math.isnan(empty["l2"])
    assert variants.finite_or_blank(empty)["l2"] == ""


def test_enhanced_pairs_are_the_projected_face_and_its_g_real_render(files, tmp_path):
    from drfhq_lib.infer.enhance import SAMPLES
    from drfhq_lib.infer.projection import ProjectionParams, load_latent, render

    real = variant_files.source_variant(files["source32"])
    rendering = replace(variant_files.source_variant(files["source32"]), name="DRFHQ")
    inputs = [SAMPLES / "kenji_portrait.png"]
    rows = variant_files.enhance_with(real, rendering, inputs, tmp_path / "DRFHQ",
                                 ProjectionParams(steps=1, w_avg_samples=1000), progress=False)
    assert [r["status"] for r in rows.values()] == ["ok"]
    assert variant_files.enhance_with(real, variants.not_run("DHF", "x"), inputs, tmp_path) == {}
    common = variant_files.enhanced_inputs({"DRFHQ": rows}, {"DRFHQ": tmp_path / "DRFHQ"})
    assert common == inputs
    pairs = variant_files.result_pairs(common, {"DRFHQ": tmp_path / "DRFHQ"}, real.G)
    (aligned, result), = pairs["DRFHQ"]
    assert aligned.shape == result.shape == (1, 3, 32, 32)
    assert torch.equal(aligned, variant_files.projected_face(inputs[0], 32))
    ws = load_latent(tmp_path / "DRFHQ" / "latents" / "kenji_portrait.npz")["ws"][None]
    assert torch.equal(result, render(real.G, ws))


def test_dataset_rows_give_one_row_per_protocol_and_dataset_in_protocol_order():
    from drfhq_lib.eval import metrics

    lpips = TinyLPIPS()
    lpips.label = "tiny"
    real = variants.Variant("G_real", status=variants.OK, trained=True)
    renderings = [variants.Variant("DHF", status=variants.OK, trained=True),
                  variants.Variant("DRFHQ", status=variants.OK, trained=True)]
    a = torch.zeros(1, 3, 32, 32)
    pairs = {"DHF": [(a, a + 0.5)], "DRFHQ": [(a, a + 0.25)]}
    alex = metrics.PairScorer(metrics.PAIR_PROTOCOLS["256-alex"], None, "LPIPS not run: no file")
    vgg = metrics.PairScorer(metrics.PAIR_PROTOCOLS["native-vgg"], lpips)
    rows = variants.dataset_rows(real, renderings, pairs, [alex, vgg])
    assert [(r["protocol"], r["generator"]) for r in rows] == [
        ("256-alex", "DHF"), ("256-alex", "DRFHQ"), ("native-vgg", "DHF"), ("native-vgg", "DRFHQ")]
    assert [r["size_px"] for r in rows] == [256, 256, 32, 32]
    # constant differences: L2 = d^2 at any size (0.25 and 0.0625), mse_01 = L2 / 4
    assert [r["l2"] for r in rows] == pytest.approx([0.25, 0.0625] * 2)
    assert [r["mse_01"] for r in rows] == pytest.approx([0.0625, 0.015625] * 2)
    assert rows[0]["lpips"] == "" and rows[0]["lpips_note"] == "LPIPS not run: no file"
    assert rows[2]["lpips"] > rows[3]["lpips"] > 0 and rows[2]["lpips_note"] == ""
    assert len({tuple(r) for r in rows}) == 1  # the same columns in every row
