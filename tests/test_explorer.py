"""Latent explorer: per-group weight blending, latents, preview and the widgets."""

import numpy as np
import pytest
import torch

from drfhq_lib.apps import explorer
from drfhq_lib.infer import blend, latent_files
from drfhq_lib.eval import shared_latent, shared_latent_figure
from drfhq_lib.errors import DrfhqError
from drfhq_lib.finetune import tiny_networks
from drfhq_lib.infer.projection import ProjectionParams, render, save_latent


def _tiny(resolution=32, seed=0):
    return tiny_networks(resolution, channels=16, z_dim=16, seed=seed,
                         with_D=False)["G_ema"].eval().requires_grad_(False)


@pytest.fixture(scope="module")
def pair():
    G_real = _tiny()
    return G_real, blend.perturbed_copy(G_real, scale=0.5, seed=1)


def _ws(G, seed=3):
    return blend.seed_latent(G, seed)


# ----------------------------------------------------------------------------- groups

@pytest.mark.parametrize("resolution,expected", [
    (1024, ([4, 8], [16, 32], [64, 128, 256, 512, 1024])),
    (64, ([4, 8], [16, 32], [64])),
    (32, ([4], [8, 16], [32])),
    (16, ([4], [8], [16])),
    (8, ([4], [], [8])),
])
def test_block_groups_follow_the_documented_split(resolution, expected):
    blocks = [2 ** i for i in range(2, resolution.bit_length())]
    groups = blend.block_groups(blocks)
    assert tuple(groups[g] for g in blend.GROUPS) == expected
    assert sorted(sum(groups.values(), [])) == blocks


@pytest.mark.parametrize("resolution", [16, 32, 64])
def test_groups_cover_every_synthesis_tensor_exactly_once(resolution):
    G = _tiny(resolution)
    names = blend.group_tensor_names(G)
    flat = sum(names.values(), [])
    floating = [n for n, t in G.synthesis.state_dict().items() if t.is_floating_point()]
    assert len(flat) == len(set(flat))
    assert sorted(flat) == sorted(floating)
    # every trainable layer (conv0, conv1, torgb, const) of every block is in some group
    for res in G.synthesis.block_resolutions:
        assert any(n.startswith(f"b{res}.torgb.weight") for n in flat)


# ----------------------------------------------------------------------------- blending

def test_blend_ends_reproduce_each_generator_bit_exactly(pair):
    G_real, G_rendering = pair
    blender = blend.BlendedGenerator(G_real, G_rendering)
    ws = torch.cat([_ws(G_real, 3), _ws(G_real, 4)])
    blender.set_blend(coarse=0, middle=0, fine=0)
    assert torch.equal(render(blender.G, ws), render(G_real, ws))
    blender.set_blend(coarse=1, middle=1, fine=1)
    assert torch.equal(render(blender.G, ws), render(G_rendering, ws))
    for name, tensor in blender.G.synthesis.state_dict().items():
        assert torch.equal(tensor, G_rendering.synthesis.state_dict()[name]), name
    blender.set_blend(coarse=0, middle=0, fine=0)  # and back again
    assert torch.equal(render(blender.G, ws), render(G_real, ws))


def test_middle_blend_differs_from_both_and_sources_stay_untouched(pair):
    G_real, G_rendering = pair
    before = {k: v.clone() for k, v in G_real.state_dict().items()}
    blender = blend.BlendedGenerator(G_real, G_rendering)
    ws = _ws(G_real)
    real, rendering = render(G_real, ws), render(G_rendering, ws)
    assert (real - rendering).abs().mean() > 0.01  # the perturbed copy is visibly different
    for group in blend.GROUPS:
        blender.set_blend(**{g: (0.5 if g == group else 0.0) for g in blend.GROUPS})
        mixed = render(blender.G, ws)
        assert not torch.equal(mixed, real), group
        assert not torch.equal(mixed, rendering), group
    blender.set_blend(coarse=0.5, middle=0.5, fine=0.5)
    halfway = render(blender.G, ws)
    assert (halfway - real).abs().mean() > 1e-3 and (halfway - rendering).abs().mean() > 1e-3
    for name, tensor in G_real.state_dict().items():
        assert torch.equal(tensor, before[name]), name
    assert blender.G.mapping is G_real.mapping  # one shared mapping network


def test_blend_is_the_lerp_of_the_weights(pair):
    G_real, G_rendering = pair
    blender = blend.BlendedGenerator(G_real, G_rendering)
    blender.set_blend(middle=0.25)
    name = blend.group_tensor_names(G_real)["middle"][0]
    a, b = G_real.synthesis.state_dict()[name], G_rendering.synthesis.state_dict()[name]
    assert torch.allclose(blender.G.synthesis.state_dict()[name], a + 0.25 * (b - a))
    fine = blend.group_tensor_names(G_real)["fine"][0]
    assert torch.equal(blender.G.synthesis.state_dict()[fine], G_real.synthesis.state_dict()[fine])


def test_blend_rejects_other_architectures_and_bad_factors(pair):
    G_real, _ = pair
    with pytest.raises(DrfhqError, match="different architectures"):
        blend.BlendedGenerator(G_real, _tiny(64))
    other_widths = tiny_networks(32, channels=8, z_dim=16, with_D=False)["G_ema"]
    with pytest.raises(DrfhqError, match="different architectures"):
        blend.BlendedGenerator(G_real, other_widths)
    blender = blend.BlendedGenerator(G_real, G_real)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        blender.set_blend(fine=1.5)
    with pytest.raises(ValueError, match="unknown layer group"):
        blender.set_blend(hair=0.5)


# ----------------------------------------------------------------------------- latents

def test_truncation_and_style_mixing(pair):
    G, _ = pair
    w_avg = G.mapping.w_avg
    ws = _ws(G, 3)
    assert torch.equal(blend.explorer_latent(G, 3), ws)
    assert torch.allclose(blend.explorer_latent(G, 3, psi=0.0), w_avg.expand_as(ws))
    # same as the mapping network's own truncation
    z = torch.from_numpy(np.random.RandomState(3).randn(1, G.z_dim)).float()
    assert torch.allclose(blend.explorer_latent(G, 3, psi=0.7),
                          G.mapping(z, None, truncation_psi=0.7))
    k = 3
    mixed = blend.explorer_latent(G, 3, mix_seed=9, crossover=k)
    assert torch.equal(mixed[:, :k], ws[:, :k])
    assert torch.equal(mixed[:, k:], _ws(G, 9)[:, k:])
    assert torch.equal(blend.explorer_latent(G, 3, mix_seed=9, crossover=G.num_ws), ws)


def test_load_projected_checks_the_file(pair, tmp_path):
    G, _ = pair
    ws = torch.randn(G.num_ws, G.w_dim)
    save_latent(tmp_path / "a.npz", ws, 0.1, 0.1, ProjectionParams(steps=1))
    assert torch.equal(latent_files.load_projected(tmp_path / "a.npz", G), ws[None])
    save_latent(tmp_path / "b.npz", torch.randn(3, G.w_dim), 0.1, 0.1, ProjectionParams(steps=1))
    with pytest.raises(DrfhqError, match="b.npz.*another network"):
        latent_files.load_projected(tmp_path / "b.npz", G)
    (tmp_path / "c.npz").write_bytes(b"not a zip")
    with pytest.raises(DrfhqError, match="c.npz"):
        latent_files.load_projected(tmp_path / "c.npz", G)
    assert [p.name for p in latent_files.list_latents(tmp_path)] == ["a.npz", "b.npz", "c.npz"]
    assert latent_files.list_latents(tmp_path / "missing") == []


# ----------------------------------------------------------------------------- preview

def test_preview_stops_early_at_a_lower_resolution(pair):
    G, _ = pair
    ws = _ws(G)
    assert torch.equal(blend.render_preview(G, ws), render(G, ws))
    small = blend.render_preview(G, ws, 16)
    assert small.shape == (1, 3, 16, 16)
    # the preview is the same face: close to the full image, downsampled
    full_small = torch.nn.functional.interpolate(render(G, ws), size=16, mode="area")
    other_face = full_small.flip(-1).roll(5, -2)
    assert (small - full_small).abs().mean() < (small - other_face).abs().mean()
    with pytest.raises(ValueError, match="preview resolution"):
        blend.render_preview(G, ws, 24)
    assert blend.preview_resolutions(G) == [8, 16, 32]
    assert set(blend.preview_timings(G, [8, 32], repeats=1)) == {8, 32}


def test_blend_sweep_rows_and_restored_factors(pair):
    G_real, G_rendering = pair
    blender = blend.BlendedGenerator(G_real, G_rendering)
    blender.set_blend(coarse=0.2)
    ws = _ws(G_real)
    rows = blend.blend_sweep(blender, ws, [0.0, 1.0], 16)
    assert list(rows) == list(blend.GROUPS)
    real16 = blend.render_preview(G_real, ws, 16)[0]
    for group in blend.GROUPS:
        assert torch.equal(rows[group][0], real16)  # value 0: G_real
    assert blender.factors == {"coarse": 0.2, "middle": 0.0, "fine": 0.0}


# ----------------------------------------------------------------------------- widgets

@pytest.fixture
def explorer_ui(pair, tmp_path):
    G_real, G_rendering = pair
    return explorer.LatentExplorer(G_real, G_rendering, latents_dir=tmp_path, preview=32)


@pytest.mark.parametrize("name,value", [
    ("seed", 5), ("truncation", 0.5), ("coarse", 1.0), ("middle", 0.0), ("fine", 0.9),
    ("crossover", 2),
])
def test_driving_a_slider_changes_the_image_and_back_restores_it(explorer_ui, name, value):
    widget = explorer_ui.widgets[name]
    before = {p: image.value for p, image in explorer_ui.images.items()}
    original = widget.value
    widget.value = value
    changed = {p for p, image in explorer_ui.images.items() if image.value != before[p]}
    assert "mixed" in changed
    if name in blend.GROUPS:  # a blend changes only the middle panel
        assert changed == {"mixed"}
    else:  # a latent change shows in all three
        assert changed == set(explorer_ui.PANELS)
    widget.value = original
    assert {p: image.value for p, image in explorer_ui.images.items()} == before


def test_mixing_seed_matters_only_with_a_crossover(explorer_ui):
    before = explorer_ui.images["real"].value
    explorer_ui.widgets["mix_seed"].value = 7  # crossover = num_ws: nothing taken from it
    assert explorer_ui.images["real"].value == before
    explorer_ui.widgets["crossover"].value = 4
    mixed_7 = explorer_ui.images["real"].value
    explorer_ui.widgets["mix_seed"].value = 8
    assert explorer_ui.images["real"].value not in (before, mixed_7)


def test_panels_show_the_three_generators(explorer_ui, pair):
    G_real, G_rendering = pair
    ui = explorer_ui
    for g in blend.GROUPS:
        ui.widgets[g].value = 0.0
    ws = ui.last_ws
    assert torch.equal(ui.last_images["real"], blend.render_preview(G_real, ws, 32))
    assert torch.equal(ui.last_images["rendering"], blend.render_preview(G_rendering, ws, 32))
    assert torch.equal(ui.last_images["mixed"], ui.last_images["real"])
    for g in blend.GROUPS:
        ui.widgets[g].value = 1.0
    assert torch.equal(ui.last_images["mixed"], ui.last_images["rendering"])


def test_preview_resolution_sets_the_image_size(explorer_ui):
    explorer_ui.widgets["preview"].value = 8
    assert explorer_ui.last_images["mixed"].shape[-2:] == (8, 8)
    explorer_ui.widgets["preview"].value = 32
    assert explorer_ui.last_images["real"].shape[-2:] == (32, 32)


def test_loading_a_saved_latent_displays_it(explorer_ui, pair, tmp_path):
    G_real, _ = pair
    ws = blend.seed_latent(G_real, 42)[0] * 0.9
    save_latent(tmp_path / "latents" / "portrait.npz", ws, 0.2, 0.2, ProjectionParams(steps=1))
    ui = explorer_ui
    ui.widgets["latents_dir"].value = str(tmp_path / "latents")
    assert [label for label, _ in ui.widgets["latent"].options][1:] == ["portrait"]
    ui.widgets["latent"].value = str(tmp_path / "latents" / "portrait.npz")
    assert torch.equal(ui.last_ws, ws[None])
    assert torch.equal(ui.last_images["real"], blend.render_preview(G_real, ws[None], 32))
    ui.widgets["seed"].value = 11  # the seed does not replace a projected latent
    assert torch.equal(ui.last_ws, ws[None])


def test_a_bad_latent_file_is_reported_not_raised(explorer_ui, tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "broken.npz").write_bytes(b"garbage")
    ui = explorer_ui
    ui.widgets["latents_dir"].value = str(tmp_path / "bad")
    shown = ui.images["real"].value
    ui.widgets["latent"].value = str(tmp_path / "bad" / "broken.npz")
    assert "broken.npz" in ui.error and "broken.npz" in ui.status.value
    assert ui.images["real"].value == shown


def test_default_preview_is_small_on_a_cpu(pair):
    from types import SimpleNamespace

    G, _ = pair
    assert blend.default_preview(G, "cpu") == 32  # capped at the network's resolution
    full = SimpleNamespace(synthesis=SimpleNamespace(
        block_resolutions=[2 ** i for i in range(2, 11)], img_resolution=1024), img_resolution=1024)
    assert blend.default_preview(full, "cpu") == 32
    assert blend.default_preview(full, "cuda") == 256


# ----------------------------------------------------------------------------- Fig. 2 table

class _MeanAbs(torch.nn.Module):
    """Stand-in for LPIPS in the table test: mean absolute difference per image."""

    label, resolved = "mean-abs", []

    def __init__(self):
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x, y):
        return (x - y).abs().flatten(1).mean(1)


class _FirstPixelEmbedder:
    """Embeds an image as its first pixel; no face where that pixel's red channel is < -0.5."""

    label, resolved = "first-pixel", []

    def embed(self, images):
        e = images[:, :, 0, 0].double().numpy().copy()
        found = e[:, 0] >= -0.5
        e[~found] = np.nan
        return e, found


def test_shared_latent_rows_measure_every_pair_and_list_what_did_not_run():
    real = torch.full((3, 3, 8, 8), 0.1)
    rendering = real.clone()
    rendering[1] += 0.5
    rendering[2, 0, 0, 0] = -1.0  # no face in G_rendering's render of the portrait
    inputs = {"portrait": torch.full((3, 8, 8), 0.25)}
    rows = shared_latent.shared_latent_rows(["seed 0", "seed 1", "portrait"], real, rendering,
                                       _MeanAbs(), _FirstPixelEmbedder(), inputs,
                                       {"broken": "no face in broken.png"}, trained=False)
    by = {(r["latent"], r["compared"]): r for r in rows}
    pair = "G_rendering(w+) vs G_real(w+)"
    assert by[("seed 0", pair)]["lpips"] == 0.0
    assert by[("seed 1", pair)]["lpips"] == pytest.approx(0.5)
    assert by[("seed 0", pair)]["identity_similarity"] == pytest.approx(1.0)
    assert by[("seed 0", pair)]["faces_found"] is True
    portrait = by[("portrait", pair)]
    assert portrait["identity_similarity"] == "" and portrait["faces_found"] is False
    assert by[("portrait", "input vs G_real(w+)")]["lpips"] == pytest.approx(0.15)
    assert ("portrait", "input vs G_rendering(w+)") in by
    assert by[("broken", "not run")]["reason"] == "no face in broken.png"
    assert len(rows) == 6 and all(r["trained"] is False for r in rows)
    assert len({tuple(r) for r in rows}) == 1  # one set of columns for the CSV


def test_shared_latent_figure_has_a_column_per_latent_and_not_run_cells():
    images = torch.zeros(2, 3, 8, 8)
    fig = shared_latent_figure.shared_latent_figure(["seed 0"], ["portrait"], {}, images, images,
                                        not_run={"broken": "no face"},
                                        input_missing={"portrait": "no input named portrait"})
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert len(fig.axes) == 9
    assert [ax.get_title() for ax in fig.axes[:3]] == ["seed 0", "portrait", "broken"]
    assert texts.count("not run\nno face") == 3 and "not run\nno input named portrait" in texts
