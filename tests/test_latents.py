"""Seed -> z: one convention (the official ``RandomState(seed).randn(1, z_dim)``) at every call
site, so a seed is the same face in the explorer (``infer.blend.seed_latent``), the fine-tuning
summary figure, the snapshot grid and the variants' figures."""

import numpy as np
import pytest
import torch

from drfhq_lib.infer import blend
from drfhq_lib.eval import variants
from drfhq_lib.finetune.summary import render_comparison
from drfhq_lib.nets import Generator, save_network
from drfhq_lib.nets.latents import seed_range, z_from_seeds


@pytest.mark.parametrize("seeds,z_dim", [([0], 512), ([5, 1, 2 ** 32 - 1], 8), ([42, 42], 3)])
def test_z_is_numpys_documented_randomstate_stream(seeds, z_dim):
    z = z_from_seeds(seeds, z_dim)
    assert z.shape == (len(seeds), z_dim) and z.dtype == torch.float32
    for row, seed in zip(z, seeds):  # oracle: numpy's Mersenne-Twister + Box-Muller stream
        expected = np.random.RandomState(seed).randn(1, z_dim)[0]
        np.testing.assert_allclose(row.numpy(), expected.astype(np.float32), rtol=0, atol=0)


def test_seed_zero_first_values_are_numpys_published_ones():
    # np.random.RandomState(0).randn(3), as printed in numpy's own docs and every tutorial
    torch.testing.assert_close(z_from_seeds([0], 3)[0],
                               torch.tensor([1.76405235, 0.40015721, 0.97873798]))


def test_bad_seeds_are_refused_and_no_seeds_is_empty():
    with pytest.raises(ValueError, match="2\\*\\*32"):
        z_from_seeds([-1], 4)
    assert z_from_seeds([], 4).shape == (0, 4)
    assert seed_range(5, 3) == [5, 6, 7]


@pytest.fixture(scope="module")
def G():
    torch.manual_seed(0)
    return Generator(z_dim=16, w_dim=16, img_resolution=16, channel_base=128, channel_max=16,
                     mapping_kwargs={"num_layers": 2}).eval().requires_grad_(False)


def test_explorer_variants_and_summary_figure_give_the_same_z_for_a_seed(G, tmp_path):
    seed = 5
    with torch.no_grad():
        reference_ws = G.mapping(torch.from_numpy(
            np.random.RandomState(seed).randn(1, 16)).float(), None)
    torch.testing.assert_close(blend.seed_latent(G, seed), reference_ws)
    torch.testing.assert_close(variants.fixed_ws(G, 2, seed)[:1], reference_ws)
    path = tmp_path / "net.safetensors"
    save_network(path, {"G_ema": G})
    real, rendering = render_comparison(path, path, count=2, seed=seed)
    with torch.no_grad():
        expected = G.synthesis(reference_ws, noise_mode="const")
    torch.testing.assert_close(real[:1], expected)
    torch.testing.assert_close(rendering[:1], expected)
