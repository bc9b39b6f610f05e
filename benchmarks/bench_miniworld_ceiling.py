"""How close to the P render can the paper's method get in the mini world at all?

    python benchmarks/bench_miniworld_ceiling.py [--count 40] [--steps 100] [--rendering FILE]
        [--init w_avg|encoder] [--out DIR] [--batch 20]

L_color (Eq. 2) holds G_rendering's blurred image to G_real's, so a method built on it keeps
the R render's colours and lighting below the blur and can change only the detail above it.
The ``oracle`` row is that method done perfectly: the R render's blurred image plus the P
render's detail (``benchmark.detail_transfer_oracle``), with the blur the mini world's
fine-tune uses (``BuildPlan.finetune_flags``). Its projection into G_real_mini adds what
G_real_mini cannot show, as ``projection of P into G_real`` does for P itself; ``ours`` is the
method itself (projection into G_rendering, then G_real), the row to compare with. Every row
is scored against the identity's P render on held-out identities (seed 2), as notebook 16.
The oracle's row for other blurs (cheap, no projection) shows how much of the R-P gap lies
below each blur. Latents are files under OUT, so an interrupted run resumes. LPIPS is the
registry's (the HED-trunk substitute offline): values comparable within this benchmark only.
``--init encoder`` starts every projection from the committed mini-world encoder, as notebook
16's artefact does (the generators share one frozen mapping, so one start serves them all).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import torch  # noqa: E402

from drfhq_lib.infer import encoder_init  # noqa: E402
from drfhq_lib.infer.projection import ProjectionParams  # noqa: E402
from drfhq_lib.miniworld import benchmark, models  # noqa: E402
from drfhq_lib.miniworld.build import BuildPlan  # noqa: E402
from drfhq_lib.nets.perceptual import build_lpips  # noqa: E402

OTHER_BLURS = ((5, 2.5), (7, 4.0), (13, 10.0))  # (kernel, sigma) at 64 px, for the sweep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=40, help="held-out identities (40)")
    parser.add_argument("--steps", type=int, default=100, help="projection steps (100)")
    parser.add_argument("--rendering", type=Path, default=None,
                        help="a G_rendering file for the `ours` row (default: the committed "
                             "stylegan2-miniworld-R64)")
    parser.add_argument("--init", choices=encoder_init.INITS, default="w_avg",
                        help="where every projection starts (w_avg, the paper's)")
    parser.add_argument("--out", type=Path, default=Path("out/bench_miniworld_ceiling"))
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--prefer", default="auto")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    data = benchmark.load_heldout(models.heldout_folder(args.out / "heldout", args.count),
                                  args.count)
    data.R, data.P = data.R.to(args.device), data.P.to(args.device)
    mini = models.load(args.device, variants=("full",))
    G_rendering = (models.generator_from_file(args.rendering, args.device) if args.rendering
                   else mini.G_rendering)
    lpips_net = build_lpips(args.prefer, args.device)
    size, sigma = BuildPlan().color_blur
    oracle = benchmark.detail_transfer_oracle(data.R, data.P, size, sigma)
    start, params, _ = encoder_init.projection_start(
        args.init, G_rendering, ProjectionParams(steps=args.steps,
                                                 loss_size=mini.G_real.img_resolution),
        args.device)
    folder = args.out / args.init  # kept latents are refused under another start
    run = lambda G, targets, name: benchmark.projected_outputs(  # noqa: E731
        G, mini.G_real, targets, data.ids, folder / name, lpips_net, params, args.batch,
        init=start)
    outputs = {"R input": data.R,
               f"oracle: R below blur {size}/{sigma:g} + P above": oracle,
               **{f"oracle: R below blur {k}/{s:g} + P above":
                  benchmark.detail_transfer_oracle(data.R, data.P, k, s) for k, s in OTHER_BLURS},
               "projection of the oracle into G_real": run(mini.G_real, oracle, "oracle"),
               "projection of P into G_real": run(mini.G_real, data.P, "P"),
               "ours (projection into G_rendering, then G_real)":
                   run(G_rendering, data.R, "ours-" + (args.rendering.stem if args.rendering
                                                        else "committed"))}
    rows = benchmark.benchmark_table(data, outputs, lpips_net)
    print(f"{len(data.ids)} held-out identities, {args.steps} steps from {args.init}, L_color "
          f"blur {size}/{sigma:g} at {mini.G_real.img_resolution} px; against the P render:")
    print(f"{'row':58s} {'LPIPS':>20s} {'PSNR':>6s} {'landmarks':>9s}")
    for row in rows[:-1]:
        print(f"{row['method']:58s} {row['lpips']:.4f} [{row['lpips_ci_low']:.4f}, "
              f"{row['lpips_ci_high']:.4f}] {row['psnr']:6.2f} {row['landmarks']:9.4f}")


if __name__ == "__main__":
    main()
