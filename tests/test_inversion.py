"""Inversion methods of Figs. 7, 11, 12 and the failure cases of Fig. 14, on 32 px untrained
generators (G_real and a different G_rendering, so "ours" is not G_real's own projection)."""

import csv
import math

import numpy as np
import pytest
import torch
from PIL import Image

from drfhq_lib.infer import enhance
from drfhq_lib.eval import figures, inversion, inversion_figures, inversion_runs
from drfhq_lib.errors import DrfhqError
from drfhq_lib.infer.enhance import Networks
from drfhq_lib.nets.identity import build_embedder
from drfhq_lib.data.images import load_image, pil_to_tensor, tensor_to_pil
from drfhq_lib.nets.perceptual import build_lpips, resize
from drfhq_lib.infer.projection import ProjectionParams, load_latent, render, w_statistics

PORTRAIT = enhance.SAMPLES / "kenji_portrait.png"
PARAMS = ProjectionParams(steps=2, w_avg_samples=1000)
I2S = inversion.I2SParams(steps=2, w_avg_samples=1000)


@pytest.fixture(scope="module")
def nets():
    G_real = enhance.untrained_generator(32, "cpu", seed=0)
    G_rendering = enhance.untrained_generator(32, "cpu", seed=1)
    return Networks(G_real, G_rendering, "untrained real", "untrained rendering", False, [])


def _run(nets, out, methods, inputs=(PORTRAIT,), **kw):
    return inversion_runs.run_methods(list(inputs), methods, out, nets, PARAMS, I2S, batch=2,
                                 size=32, prefer="substitute", progress=False, **kw)


def _pixels(path):
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


# ----------------------------------------------------------------------------- registry

def test_registry_has_every_method_of_the_figures():
    for name in [*inversion.FIG7, *inversion.FIG11, *inversion.FIG12]:
        assert inversion.get_method(name).name == name
    runs_here = {m.name for m in inversion.METHODS.values() if m.runs_here}
    assert runs_here == {"ours", "latent-optimisation", "baseline-framework", "i2s"}
    with pytest.raises(DrfhqError, match="unknown inversion method 'sdedit'"):
        inversion.get_method("sdedit")


def test_missing_encoder_results_are_not_run_with_the_checkpoint_named(nets, tmp_path):
    run = _run(nets, tmp_path, ["e4e", "hyperstyle", "restyle-psp"])
    reasons = {r["method"]: r["reason"] for r in run.rows}
    assert {r["status"] for r in run.rows} == {"not run"}
    assert "e4e_ffhq_encode.pt" in reasons["e4e"] and "omertov/encoder4editing" in reasons["e4e"]
    assert "hyperstyle_ffhq.pt" in reasons["hyperstyle"]
    assert "restyle_psp_ffhq_encode.pt" in reasons["restyle-psp"]
    assert str(tmp_path / "e4e") in reasons["e4e"]  # where the results are expected
    assert not (tmp_path / "e4e" / "kenji_portrait.png").exists()
    cells, missing, rows, cols = inversion_figures.grid_cells(run, ["e4e", "hyperstyle"])
    assert rows == ["kenji_portrait"] and cols == ["input", "e4e", "HyperStyle"]
    assert cells[0][0] is not None and cells[0][1] is None and cells[0][2] is None
    assert missing[0][1] == "needs e4e_ffhq_encode.pt"
    assert "hyperstyle_ffhq.pt" in missing[0][2].replace("\n", " ")
    assert max(len(line) for line in missing[0][2].splitlines()) <= figures.CELL_CHARS


def test_a_given_results_folder_is_picked_up_and_measured(nets, tmp_path):
    given = tmp_path / "psp_results"
    given.mkdir()
    Image.new("RGB", (256, 256), (200, 40, 90)).save(given / "kenji_portrait.jpg", quality=100)
    out = tmp_path / "out"
    (out / "e4e").mkdir(parents=True)  # results dropped straight into OUT/<method>/
    Image.new("RGB", (32, 32), (10, 20, 30)).save(out / "e4e" / "kenji_portrait.png")
    run = _run(nets, out, ["psp", "e4e"], external={"psp": given})
    psp, e4e = run.rows
    assert psp["status"] == "ok" and "kenji_portrait.jpg" in psp["reason"]
    result = _pixels(out / "psp" / "kenji_portrait.png")
    assert result.shape == (32, 32, 3)  # brought to the working size
    assert np.abs(result - [200, 40, 90]).max() <= 3
    assert e4e["status"] == "ok" and e4e["reason"] == "existing result file"
    assert _pixels(out / "e4e" / "kenji_portrait.png")[0, 0].tolist() == [10, 20, 30]
    for row in run.rows:
        assert float(row["lpips"]) > 0  # a flat colour is far from the render
        assert row["embedder"] == "identity[dlib-resnet-128d]"


def test_an_encoders_latent_is_rendered_by_G_real_and_a_bad_one_fails_alone(nets, tmp_path):
    ws = torch.randn(nets.G_real.num_ws, nets.G_real.w_dim, generator=torch.Generator().manual_seed(3))
    folder = tmp_path / "e4e-drfhq"
    folder.mkdir(parents=True)
    np.savez(folder / "kenji_portrait.npz", ws=ws.numpy())
    bad = tmp_path / "restyle"
    bad.mkdir()
    np.savez(bad / "kenji_portrait.npz", ws=np.zeros((3, 7), np.float32))
    run = _run(nets, tmp_path, ["e4e-drfhq", "restyle-e4e-drfhq"],
               external={"restyle-e4e-drfhq": bad})
    good, failed = run.rows
    expected = np.asarray(tensor_to_pil(render(nets.G_real, ws[None]))[0], dtype=np.int16)
    assert good["status"] == "ok"
    assert np.array_equal(_pixels(tmp_path / "e4e-drfhq" / "kenji_portrait.png"), expected)
    assert failed["status"] == "failed" and "(3, 7)" in failed["reason"]


# ----------------------------------------------------------------------------- I2S

def test_i2s_defaults_are_the_papers():
    p = inversion.I2SParams()
    assert (p.steps, p.lr, p.mse_weight, p.perceptual_weight) == (5000, 0.01, 1.0, 1.0)


def test_i2s_distance_is_mse_plus_lpips_with_or_without_cached_target(lpips_hed):
    lpips = lpips_hed
    x, y = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    d = inversion.i2s_distance(lpips, inversion.I2SParams(mse_weight=2.0, perceptual_weight=0.5))
    expected = 2.0 * (x - y).square().flatten(1).mean(1) + 0.5 * lpips(x, y)
    assert torch.allclose(d(x, y), expected, atol=1e-5)
    assert torch.allclose(d.against(y)(x), expected, atol=1e-5)


def test_i2s_moves_only_w_plus_at_a_constant_learning_rate(nets, lpips_hed):
    G = nets.G_rendering
    noise_before = {k: v.clone() for k, v in G.synthesis.named_buffers() if "noise" in k}
    target = torch.rand(1, 3, 32, 32) * 2 - 1
    lpips = lpips_hed
    w_avg, w_std = w_statistics(G, I2S, torch.device("cpu"))
    result = inversion.i2s_project(G, target, inversion.i2s_distance(lpips, I2S),
                                   inversion.I2SParams(steps=4), progress=False,
                                   w_stats=(w_avg, w_std))
    assert result.learning_rates == [0.01] * 4
    assert result.optimised == ["ws"]
    noise_after = dict(G.synthesis.named_buffers())
    assert noise_before and all(torch.equal(v, noise_after[k]) for k, v in noise_before.items())
    assert not torch.equal(result.ws[0, 0], w_avg)  # W+ moved from the mean w
    assert result.history[-1][0] < result.history[0][0]  # and the I2S loss went down


# ----------------------------------------------------------------------------- runner

@pytest.fixture(scope="module")
def projected(nets, tmp_path_factory):
    out = tmp_path_factory.mktemp("inversion")
    bad = out.parent / "broken.png"
    bad.write_text("not a picture")
    run = _run(nets, out, ["ours", "i2s", "latent-optimisation"], inputs=[PORTRAIT, bad])
    return out, bad, run


def test_rows_carry_status_and_metrics(projected):
    out, bad, run = projected
    assert [r["item"] for r in run.rows] == [
        "ours/kenji_portrait", "i2s/kenji_portrait", "latent-optimisation/kenji_portrait",
        "ours/broken", "i2s/broken", "latent-optimisation/broken"]
    # Oracles computed here from the files on disk, not through the runner: LPIPS of the saved
    # result against the saved aligned input, and the cosine of the two face embeddings by hand.
    lpips_net = build_lpips("substitute", "cpu")
    embedder = build_embedder("substitute", "cpu")
    aligned = pil_to_tensor(load_image(out / "aligned" / "kenji_portrait.png"))
    (e_in,), (found_in,) = embedder.embed(aligned)
    for row in run.rows[:3]:
        assert row["status"] == "ok" and float(row["seconds"]) > 0
        result = pil_to_tensor(load_image(out / row["method"] / "kenji_portrait.png"))
        lpips = float(row["lpips"])  # raises on a non-number, unlike a truthiness check
        assert 0 < lpips < 2
        assert lpips == pytest.approx(float(lpips_net(result, aligned)[0]), abs=1e-4)
        similarity = float(row["identity_similarity"])
        (e_out,), (found_out,) = embedder.embed(result)
        if found_in and found_out:
            expected = float(np.dot(e_in, e_out) / (np.linalg.norm(e_in) * np.linalg.norm(e_out)))
            assert -1 <= similarity <= 1
            assert similarity == pytest.approx(expected, abs=1e-4)
            assert row["identity_note"] == ""
        else:  # no face in one of them: nan, never a made-up number, and the reason beside it
            assert math.isnan(similarity) and "no face" in row["identity_note"]
        assert row["trained"] == "false" and row["lpips_net"] == "lpips-vgg16[hed-trunk]"
        assert (out / row["method"] / "kenji_portrait.npz").exists()
    with open(out / "inversion.csv", newline="") as f:
        on_disk = {r["item"]: r for r in csv.DictReader(f)}
    assert on_disk["i2s/kenji_portrait"]["lpips"] == run.rows[1]["lpips"]


def test_a_failing_input_is_a_row_and_does_not_stop_the_others(projected):
    out, bad, run = projected
    for row in run.rows[3:]:
        assert row["status"] == "failed" and "broken.png" in row["reason"]
    assert run.names == ["kenji_portrait"]


def test_rerun_skips_finished_results(projected, nets):
    out, bad, run = projected
    files = [out / m / "kenji_portrait.png" for m in ("ours", "i2s", "latent-optimisation")]
    stamps = [f.stat().st_mtime_ns for f in files]
    again = _run(nets, out, ["ours", "i2s", "latent-optimisation"], inputs=[PORTRAIT, bad])
    assert [f.stat().st_mtime_ns for f in files] == stamps
    assert again.rows[:3] == run.rows[:3]  # the finished rows are kept as they were


def test_overwrite_recomputes_the_same_projection(projected, nets):
    out, bad, run = projected
    latent = out / "ours" / "kenji_portrait.npz"
    before, stamp = load_latent(latent)["ws"], latent.stat().st_mtime_ns
    again = _run(nets, out, ["ours"], overwrite=True)
    assert latent.stat().st_mtime_ns != stamp and again.rows[0]["status"] == "ok"
    assert torch.equal(load_latent(latent)["ws"], before)  # seeded by the input, not the run


def test_ours_is_enhances_path(projected, nets, tmp_path):
    out, _, _ = projected
    enhanced = enhance.enhance_files([PORTRAIT], tmp_path, nets, PARAMS, batch=2, size=32,
                                     prefer="substitute", progress=False)
    assert enhanced[str(PORTRAIT)]["status"] == "ok"
    ws = load_latent(tmp_path / "latents" / "kenji_portrait.npz")["ws"]
    ours = load_latent(out / "ours" / "kenji_portrait.npz")["ws"]
    assert torch.equal(ws, ours)  # the same projection into G_rendering
    by_real = np.asarray(tensor_to_pil(resize(render(nets.G_real, ws[None]), 32))[0], np.int16)
    by_rendering = np.asarray(tensor_to_pil(render(nets.G_rendering, ws[None]))[0], np.int16)
    result = _pixels(out / "ours" / "kenji_portrait.png")
    assert np.array_equal(result, by_real)  # rendered by G_real ...
    assert not np.array_equal(result, by_rendering)  # ... not by G_rendering
    # and "latent optimisation" projects into G_real instead
    assert not torch.equal(load_latent(out / "latent-optimisation" / "kenji_portrait.npz")["ws"], ws)


def test_comparison_figure_is_stamped_and_names_not_run_methods(projected, nets, tmp_path):
    out, bad, run = projected
    fig = inversion_figures.comparison_figure(run, ["e4e", "ours"], nets, "Fig. 7")
    texts = [t.get_text() for t in fig.texts] + [t.get_text() for ax in fig.axes for t in ax.texts]
    from drfhq_lib.eval.figures import UNTRAINED, save_figure

    assert UNTRAINED in texts
    assert any("not run" in t for t in texts)  # e4e has no row in this run
    save_figure(fig, tmp_path / "fig.png")
    assert (tmp_path / "fig.png").stat().st_size > 0


def test_figure_note_says_when_G_rendering_is_G_real(nets):
    same = Networks(nets.G_real, nets.G_real, "a", "a", False, [])
    assert "G_rendering = G_real" in inversion_figures.figure_note(same, [])
    assert "G_rendering = G_real" not in inversion_figures.figure_note(nets, [])


# ----------------------------------------------------------------------------- failure cases

def test_failure_cases_report_lpips_identity_and_mask_statistics(nets, tmp_path):
    bad = tmp_path / "nope.png"
    bad.write_bytes(b"")
    cases = inversion_runs.failure_cases({"accessories": [PORTRAIT], "large pose": [bad],
                                     "complex background": []},
                                    tmp_path / "out", nets, PARAMS, batch=2, size=32,
                                    prefer="substitute", progress=False)
    ok, failed, empty = cases.rows
    assert ok["category"] == "accessories" and ok["status"] == "ok"
    assert float(ok["final_lpips"]) > 0
    assert float(ok["pixels_mask_soft"]) > 0 and float(ok["mean_change_inside"]) > 0
    assert float(ok["max_change_outside"]) == 0.0  # nothing changes outside the mask
    original, result, final = cases.panels[0]
    assert final.shape == original.shape == pil_to_tensor(load_image(PORTRAIT)).shape
    assert result.shape[-1] == 32
    assert failed["status"] == "failed" and cases.panels[1] == [None, None, None]
    assert "nope.png" in failed["reason"] and "nope.png" in cases.missing[1][0]
    assert empty["status"] == "not run" and "complex background" in empty["reason"]
    assert cases.row_labels[0] == (f"accessories\nkenji_portrait\nLPIPS {ok['final_lpips']}, "
                                   f"id {ok['identity_similarity']}")
    assert cases.row_labels[1:] == ["large pose\nnope", "complex background"]
    table = inversion_runs.failure_table(cases)
    assert list(table[2]) == list(table[0])  # every row has every column, for the CSV
