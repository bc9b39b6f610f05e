"""The method on the committed mini-world networks, against the P renders as ground truth.

The oracle is the renderer, not the code under test: each held-out identity's P render is what
a perfect CG→photo-style transfer would return for its R render.
"""

import subprocess
import sys

import pytest
import torch

from drfhq_lib.infer.encoder_init import projection_start
from drfhq_lib.infer.projection import ProjectionParams, project, render
from drfhq_lib.miniworld import aligned, models

pytestmark = pytest.mark.skipif(not models.available(), reason="mini-world networks missing")


@pytest.fixture(scope="module")
def heldout(tmp_path_factory):
    folder = tmp_path_factory.mktemp("heldout")
    # seed 2: the benchmark's held-out identities, never seen in training (seeds 0 and 1)
    subprocess.run([sys.executable, "-m", "drfhq_lib", "miniworld", "render", "--count", "6",
                    "--seed", "2", "--size", "128", "--supersample", "1", "--out",
                    str(folder / "renders"), "--no-progress"], check=True)
    aligned.align_folder(folder / "renders", folder / "aligned", 64, progress=False)
    _, R, z = aligned.load_aligned(folder / "aligned", "R")
    _, P, _ = aligned.load_aligned(folder / "aligned", "P")
    return R, P, z


STEPS = 100  # notebook 16's committed artefact: the encoder start, 100 steps


@pytest.fixture(scope="module")
def enhanced(heldout, lpips_hed):
    """Ours as `drfhq enhance` runs it on the mini world: projected into G_rendering_mini from
    the committed encoder's guess (no latent noise), rendered with G_real_mini."""
    R, _, _ = heldout
    mini = models.load("cpu", variants=("full",))
    init, params, _ = projection_start("encoder", mini.G_rendering,
                                       ProjectionParams(steps=STEPS, loss_size=64))
    ws = project(mini.G_rendering, R, lpips_hed, params, progress=False, init_ws=init(R)).ws
    return render(mini.G_real, ws)


def psnr(a, b):  # images in [-1, 1]: the peak-to-peak range is 2
    return 10 * torch.log10(4 / (a - b).square().mean(dim=(1, 2, 3)))


def test_enhanced_renders_are_closer_to_the_p_render_than_the_input_in_pixels(heldout, enhanced):
    R, P, _ = heldout
    assert psnr(enhanced, P).mean() > psnr(R, P).mean() + 0.3, (psnr(enhanced, P), psnr(R, P))


@pytest.mark.xfail(strict=True, reason="finding: in LPIPS the enhanced faces tie with the R "
                   "inputs (0.1535 vs 0.1516 on notebook 16's 100 held-out identities, encoder "
                   "start, 100 steps; PSNR 16.9 vs 16.2 dB); L_color keeps the input's "
                   "colours and lighting, where most of the R-P gap lies "
                   "(benchmarks/bench_miniworld_ceiling.py), G_rendering_mini stays within "
                   "LPIPS 0.007 of G_real_mini, and G_real_mini at the identity's own latent "
                   "scores 0.217 against P, worse than R (benchmarks/bench_miniworld_paired.py; "
                   "trained on 3000 identities it scores 0.130, yet ours still ties: "
                   "benchmarks/bench_miniworld_sharper.py); strict, so the day it holds this "
                   "test says so")
def test_enhanced_renders_are_closer_to_the_p_render_than_the_input_in_lpips(heldout, enhanced,
                                                                             lpips_hed):
    R, P, _ = heldout
    with torch.no_grad():
        to_truth = lpips_hed(enhanced, P).flatten()
        input_to_truth = lpips_hed(R, P).flatten()
    assert to_truth.mean() < input_to_truth.mean(), (to_truth, input_to_truth)


def test_committed_networks_load_with_their_recorded_digests():
    from drfhq_lib.files import sha256_file

    for name in models.load("cpu").labels.values():
        record = models.provenance(name)
        assert sha256_file(models.network_file(name)) == record["sha256"]
        assert record["fp16_max_abs_error"] < 2 / 255  # below one 8-bit level of [-1, 1]
