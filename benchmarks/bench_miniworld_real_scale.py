"""Does G_real_mini get sharper on held-out identities when it sees more training identities?

    python benchmarks/bench_miniworld_real_scale.py [--counts 400 1400 3000] [--kimg 16]
        [--count 40] [--out DIR]

The LPIPS half of notebook 16's claim is bounded by G_real_mini itself: at a held-out
identity's own latent w_id it is further from the P render than the R input is
(``bench_miniworld_paired.py``). The committed G_real_mini saw 400 identities. For each count,
this continues its regression (``real_training.regressed_copy``: G(z_i) ≈ P_i, mapping and
ToRGB frozen, constant noise) for ``--kimg`` on the first COUNT P renders of the training set
(seed 0, rendered and aligned under OUT when missing), then scores G(z_id) against P on
held-out identities (seed 2) and on 200 training identities, beside the R input's LPIPS on the
held-out set, the bar a transfer must pass. A regression continued on the same 400 separates
more training from more identities. LPIPS is the registry's (the HED-trunk substitute offline).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import torch  # noqa: E402

from drfhq_lib.eval import groundtruth  # noqa: E402
from drfhq_lib.infer.projection import render  # noqa: E402
from drfhq_lib.miniworld import aligned, benchmark, models, real_training  # noqa: E402
from drfhq_lib.nets.perceptual import build_lpips  # noqa: E402


def at_own_latents(G, z: torch.Tensor, P: torch.Tensor, lpips_net) -> tuple[float, float]:
    """(LPIPS, PSNR) of G(z_i) against P_i, averaged."""
    with torch.no_grad():
        images = render(G, G.mapping(z))
        return float(lpips_net(images, P).mean()), float(groundtruth.psnr(images, P).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[400, 1400, 3000],
                        help="training identities per run (400 1400 3000)")
    parser.add_argument("--kimg", type=float, default=16.0, help="regression per run (16)")
    parser.add_argument("--count", type=int, default=40, help="held-out identities (40)")
    parser.add_argument("--out", type=Path, default=Path("out/bench_miniworld_real_scale"))
    parser.add_argument("--prefer", default="auto")
    args = parser.parse_args()

    G_real = models.load("cpu", variants=()).G_real
    train = models.aligned_set(args.out / "train", max(args.counts), "train")
    held = benchmark.load_heldout(models.heldout_folder(args.out / "heldout", args.count),
                                  args.count)
    lpips_net = build_lpips(args.prefer, "cpu")
    _, P, z = aligned.load_aligned(train, "P", max(args.counts))
    seen = slice(0, min(200, min(args.counts)))
    rows = [("committed G_real_mini (400 identities)", G_real)]
    for count in args.counts:
        rows.append((f"+ {args.kimg:g} kimg on {count} identities",
                     real_training.regressed_copy(G_real, z[:count], P[:count], args.kimg)))
    print(f"G(z_id) against P; the R input scores LPIPS "
          f"{float(lpips_net(held.R, held.P).mean()):.4f} on the {len(held.ids)} held-out "
          f"identities")
    print(f"{'generator':44s} {'held-out LPIPS':>14s} {'PSNR':>6s} {'training LPIPS':>14s} "
          f"{'PSNR':>6s}")
    for name, G in rows:
        lp_h, ps_h = at_own_latents(G, held.z, held.P, lpips_net)
        lp_t, ps_t = at_own_latents(G, z[seen], P[seen], lpips_net)
        print(f"{name:44s} {lp_h:14.4f} {ps_h:6.2f} {lp_t:14.4f} {ps_t:6.2f}")


if __name__ == "__main__":
    main()
