"""The method on the committed mini-world networks, against the P renders as ground truth.

The oracle is the renderer, not the code under test: each held-out identity's P render is what
a perfect CG→photo-style transfer would return for its R render.
"""

import subprocess
import sys

import pytest
import torch

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


STEPS = 100  # notebook 16's committed artefact: the paper's start, w_avg, with 100 steps


@pytest.fixture(scope="module")
def enhanced(heldout, lpips_hed):
    """Ours, the paper's inference: projected into G_rendering_mini from w_avg, rendered with
    G_real_mini."""
    R, _, _ = heldout
    mini = models.load("cpu", variants=("full",))
    params = ProjectionParams(steps=STEPS, loss_size=64)
    ws = project(mini.G_rendering, R, lpips_hed, params, progress=False).ws
    return render(mini.G_real, ws)


def psnr(a, b):  # images in [-1, 1]: the peak-to-peak range is 2
    return 10 * torch.log10(4 / (a - b).square().mean(dim=(1, 2, 3)))


def test_enhanced_renders_are_closer_to_the_p_render_than_the_input_in_pixels(heldout, enhanced):
    R, P, _ = heldout
    assert psnr(enhanced, P).mean() > psnr(R, P).mean() + 0.3, (psnr(enhanced, P), psnr(R, P))


def test_enhanced_renders_are_closer_to_the_p_render_than_the_input_in_lpips(heldout, enhanced,
                                                                             lpips_hed):
    R, P, _ = heldout
    with torch.no_grad():
        to_truth = lpips_hed(enhanced, P).flatten()
        input_to_truth = lpips_hed(R, P).flatten()
    assert to_truth.mean() < input_to_truth.mean(), (to_truth, input_to_truth)


def test_fine_tuning_teaches_the_full_variant_r_better_than_the_baseline(heldout, lpips_hed):
    """Tab. 2's analogue against the renderer: G(w_id) beside the identity's own R render, w_id
    the mapping of its z (frozen in the fine-tune, so the same w in every generator)."""
    R, _, z = heldout
    mini = models.load("cpu", variants=("baseline", "full"))
    with torch.no_grad():
        w = mini.G_real.mapping(z)
        to_r = {name: lpips_hed(render(G, w), R).mean()
                for name, G in [("G_real", mini.G_real), *mini.renderings.items()]}
    assert to_r["full"] < to_r["baseline"], to_r
    assert to_r["full"] < to_r["G_real"], to_r  # it learned R, from unpaired renders

def test_committed_networks_load_with_their_recorded_digests():
    from drfhq_lib.files import sha256_file

    for name in models.load("cpu").labels.values():
        record = models.provenance(name)
        assert sha256_file(models.network_file(name)) == record["sha256"]
        assert record["fp16_max_abs_error"] < 2 / 255  # below one 8-bit level of [-1, 1]
