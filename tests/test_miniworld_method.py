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


@pytest.mark.xfail(strict=True, reason="finding: the enhanced faces are not closer to the P renders "
                   "than the R inputs (LPIPS 0.182 vs 0.173 on 6 held-out identities, 60 steps). "
                   "L_color keeps the input's colours and lighting, where most of the R-P gap "
                   "lies (benchmarks/bench_miniworld_ceiling.py: a perfect method would reach "
                   "0.143 against the R input's 0.154), and G_rendering_mini stays within LPIPS "
                   "0.005 of G_real_mini (also after 10 kimg, and with lambda_c / 10); strict, so "
                   "the day it holds this test says so")
def test_enhanced_renders_are_closer_to_the_p_render_than_the_input_is(heldout, lpips_hed):
    R, P, _ = heldout
    mini = models.load("cpu", variants=("full",))
    params = ProjectionParams(steps=60, loss_size=64, w_avg_samples=2000)
    ws = project(mini.G_rendering, R, lpips_hed, params, progress=False).ws
    enhanced = render(mini.G_real, ws)
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
