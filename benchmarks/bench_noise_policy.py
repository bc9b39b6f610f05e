"""The identity terms under the two noise policies, on the mini-world networks.

    python benchmarks/bench_noise_policy.py [--count 64] [--rendering stylegan2-miniworld-R64]

For G_rendering = G_real (the first step of every fine-tune) and for a fine-tuned G_rendering,
prints L_sketch and L_color (64 px, the mini world's loss sizes) with G_real rendered
  - on its constant noise buffers against G_rendering on random noise (the old policy), and
  - on the same random draw as G_rendering (the policy of finetune/objective.py).
What the first policy adds at G_rendering = G_real is a penalty on stochastic texture alone.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from drfhq_lib.finetune.losses import LAMBDA_COLOR, LAMBDA_SKETCH, SKETCH_SIZE, IdentityLosses  # noqa: E402
from drfhq_lib.finetune.objective import _rng_state, same_noise  # noqa: E402
from drfhq_lib.nets import load_network  # noqa: E402
from drfhq_lib.nets.latents import z_from_seeds  # noqa: E402
from drfhq_lib.nets.perceptual import build_lpips  # noqa: E402
from drfhq_lib.nets.sketch import build_sketch  # noqa: E402
from drfhq_lib.nets.weights import resolve  # noqa: E402


def generator(label: str):
    return load_network(resolve(label).path)["G_ema"].eval()


@torch.no_grad()
def terms(identity, G_real, G, ws, shared: bool) -> dict:
    torch.manual_seed(1)
    state = _rng_state(ws.device)
    rendering = G.synthesis(ws, noise_mode="random")
    if shared:
        with same_noise(state, ws.device):
            real = G_real.synthesis(ws, noise_mode="random")
    else:
        real = G_real.synthesis(ws, noise_mode="const")
    _, values = identity(real, rendering)
    return {k: float(v) for k, v in values.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=64)
    ap.add_argument("--real", default="stylegan2-miniworld-P64")
    ap.add_argument("--rendering", default="stylegan2-miniworld-R64")
    args = ap.parse_args()
    G_real = generator(args.real)
    r = G_real.img_resolution
    identity = IdentityLosses(build_sketch("auto", "cpu"), build_lpips("auto", "cpu"),
                              lambda_sketch=LAMBDA_SKETCH * (SKETCH_SIZE / r) ** 2,
                              sketch_size=r, color_size=r, blur_size=3, blur_sigma=2.5)
    ws = G_real.mapping(z_from_seeds(range(args.count), G_real.z_dim), None)
    print(f"{args.count} samples, {r} px; λs = {identity.lambda_sketch:g}, λc = {LAMBDA_COLOR:g}")
    print(f"{'G_rendering':<34}{'G_real noise':<16}{'L_sketch':>10}{'λs·L_sketch':>13}"
          f"{'L_color':>10}{'λc·L_color':>12}")
    for name, G in ((f"{args.real} (copy)", G_real), (args.rendering, generator(args.rendering))):
        for shared in (False, True):
            t = terms(identity, G_real, G, ws, shared)
            print(f"{name:<34}{'same draw' if shared else 'constant':<16}{t['sketch']:>10.2f}"
                  f"{identity.lambda_sketch * t['sketch']:>13.4f}{t['color']:>10.5f}"
                  f"{LAMBDA_COLOR * t['color']:>12.3f}")


if __name__ == "__main__":
    main()
