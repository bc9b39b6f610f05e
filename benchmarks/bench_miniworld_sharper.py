"""The paper's method on a sharper G_real_mini: does ours then beat the R input in LPIPS?

    python benchmarks/bench_miniworld_sharper.py [--train-count 3000] [--kimg 32]
        [--count 40] [--steps 100] [--lambda-color L] [--finetune-kimg K] [--oracle-kimg K]
        [--out DIR] [--batch 20]

``bench_miniworld_real_scale.py`` shows G_real_mini getting sharper on held-out identities when
its regression continues on more identities. This benchmark runs the paper's method on such a
generator, every step a file under OUT so that a rerun resumes:

1. G_real' = the committed G_real_mini regressed further (``real_training.regressed_copy``,
   mapping and ToRGB frozen) for KIMG on the first TRAIN-COUNT P renders of the training set
   (seed 0), saved with the committed discriminator, which the fine-tune starts from;
2. G_rendering' = ``drfhq finetune`` from G_real' on the fine-tuning set's 250 R renders
   (seed 1, unpaired), the full variant, with ``miniworld train``'s flags
   (``BuildPlan.finetune_flags``), or with the λc and length given (a run of its own);
   with ``--oracle-kimg``, also a paired oracle: G_real' regressed onto those R renders at
   their own latents (``bench_miniworld_paired.py``);
3. against each held-out identity's P render (seed 2), from w_avg (the paper's start): the
   R input, the projection into G_real', ours (projection into G_rendering', then G_real'),
   and G_real' at the identity's own latent. LPIPS is the registry's (the HED-trunk substitute offline);
4. the Tab. 2 analogue (G(w_id) against the R render), and the projection's own fit: the
   LPIPS of each G_rendering to R at the projected W+ beside at w_id, and how far W+ lies
   from w_id, which tells a projection that misses w_id because the optimiser stalls from
   one that misses it because another latent fits R better.

An experiment on a generator of its own; ``drfhq miniworld train`` builds the committed ones.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import torch  # noqa: E402

from drfhq_lib import cli  # noqa: E402
from bench_miniworld_paired import paired_oracle  # noqa: E402
from drfhq_lib.infer.projection import ProjectionParams, load_latent, render  # noqa: E402
from drfhq_lib.miniworld import aligned, benchmark, models, real_training  # noqa: E402
from drfhq_lib.miniworld.build import BuildPlan, real_name  # noqa: E402
from drfhq_lib.nets import load_network, save_network  # noqa: E402
from drfhq_lib.nets.perceptual import build_lpips  # noqa: E402


def sharper_real(out: Path, count: int, kimg: float) -> Path:
    """The file of G_real' (G_ema and the committed D), made once."""
    path = out / f"g_real-{count}ids-{kimg:g}kimg.safetensors"
    if not path.exists():
        committed = load_network(models.network_file(real_name(models.RESOLUTION)))
        G = committed["G_ema"].float().eval()
        _, P, z = aligned.load_aligned(models.aligned_set(out / "train", count, "train"), "P",
                                       count)
        G = real_training.regressed_copy(G, z, P, kimg)
        save_network(path, {"G_ema": G, "D": committed["D"].float()},
                     {"what": "experiment: G_real_mini regressed further", "identities": count,
                      "kimg": kimg})
    return path


def finetuned(source: Path, out: Path, plan: BuildPlan) -> Path:
    """The last network of ``drfhq finetune`` (full variant) from ``source`` with ``plan``'s
    flags (its λc, and its schedules scaled to its length, as ``miniworld train`` runs it);
    it resumes."""
    data = models.aligned_set(out / "finetune", 250, "finetune") / "R"
    run = out / f"finetune-{source.stem}{variant_suffix(plan)}"
    flags = ["finetune", "--source", str(source), "--data", str(data), "--out", str(run),
             *plan.finetune_flags]
    if cli.main(flags) != 0:
        raise SystemExit(f"drfhq finetune failed; see {run}")
    return sorted(run.glob("network-*.safetensors"))[-1]


def latents(folder: Path, ids: list[str]) -> torch.Tensor:
    return torch.stack([load_latent(folder / f"{i}.npz")["ws"] for i in ids])


def variant_suffix(plan: BuildPlan) -> str:
    """Names a fine-tune that differs from ``miniworld train``'s (and its latents)."""
    default = BuildPlan()
    return ("" if plan.lambda_color == default.lambda_color else f"-lc{plan.lambda_color:g}") \
        + ("" if plan.finetune_kimg == default.finetune_kimg else f"-{plan.finetune_kimg:g}kimg")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-count", type=int, default=3000)
    parser.add_argument("--kimg", type=float, default=32.0, help="regression of G_real' (32)")
    parser.add_argument("--count", type=int, default=40, help="held-out identities (40)")
    parser.add_argument("--steps", type=int, default=100, help="projection steps (100)")
    parser.add_argument("--lambda-color", type=float, default=BuildPlan().lambda_color,
                        help="the fine-tune's λc (miniworld train's; the paper's is 3.75e3)")
    parser.add_argument("--finetune-kimg", type=float, default=BuildPlan().finetune_kimg,
                        help="the fine-tune's length (miniworld train's)")
    parser.add_argument("--oracle-kimg", type=float, default=0.0,
                        help="also a paired-supervision oracle regressed from G_real' on the "
                        "fine-tuning set's R renders for this long (0: none), as in "
                        "bench_miniworld_paired.py")
    parser.add_argument("--out", type=Path, default=Path("out/bench_miniworld_sharper"))
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--prefer", default="auto")
    args = parser.parse_args()

    source = sharper_real(args.out, args.train_count, args.kimg)
    G_real = models.generator_from_file(source)
    plan = BuildPlan(finetune_kimg=args.finetune_kimg, lambda_color=args.lambda_color)
    G_rendering = models.generator_from_file(finetuned(source, args.out, plan))
    data = benchmark.load_heldout(models.heldout_folder(args.out / "heldout", args.count),
                                  args.count)
    lpips_net = build_lpips(args.prefer, "cpu")
    params = ProjectionParams(steps=args.steps, loss_size=G_real.img_resolution)
    folder = args.out / f"latents-{source.stem}-{args.steps}steps"  # kept latents must match
    ours_folder = "ours" + variant_suffix(plan)
    run = lambda G, name: benchmark.projected_outputs(  # noqa: E731
        G, G_real, data.R, data.ids, folder / name, lpips_net, params, args.batch)
    with torch.no_grad():
        w_id = G_real.mapping(data.z)
        at_identity = render(G_real, w_id)
    renderings = {"full": (G_rendering, ours_folder)}
    if args.oracle_kimg > 0:
        oracle = paired_oracle(G_real, args.out / "finetune", 250, args.oracle_kimg,
                               args.out / f"oracle-{source.stem}", "cpu")
        renderings[f"paired oracle, {args.oracle_kimg:g} kimg"] = (
            oracle, f"ours-oracle-{args.oracle_kimg:g}kimg")
    outputs = {"R input": data.R, "projection into G_real'": run(G_real, "direct"),
               **{f"ours ({name} then G_real')": run(G, sub)
                  for name, (G, sub) in renderings.items()},
               "G_real' at the identity's own latent w_id": at_identity}
    print(f"{len(data.ids)} held-out identities, {args.steps} steps from w_avg; G_real': "
          f"{args.kimg:g} kimg more on {args.train_count} identities; against the P render:")
    print(f"{'row':44s} {'LPIPS':>24s} {'PSNR':>6s} {'landmarks':>9s}")
    for row in benchmark.benchmark_table(data, outputs, lpips_net)[:-1]:
        print(f"{row['method']:44s} {row['lpips']:.4f} [{row['lpips_ci_low']:.4f}, "
              f"{row['lpips_ci_high']:.4f}] {row['psnr']:6.2f} {row['landmarks']:9.4f}")
    print("Tab. 2 analogue, G(w_id) against the identity's R render:")
    for row in benchmark.identity_table(data, G_real, {name: G for name, (G, _) in
                                                      renderings.items()}, lpips_net):
        print(f"  {row['method']:42s} {row['lpips']:.4f} {row['psnr']:6.2f}")
    print("The projection's own fit: LPIPS of G_rendering to R at the projected W+, "
          "beside at w_id (lower at the W+: the objective, not the optimiser, leaves w_id):")
    for name, (G, sub) in {"G_real'": (G_real, "direct"), **renderings}.items():
        ws = latents(folder / sub, data.ids)
        with torch.no_grad():
            fit = lpips_net(render(G, ws), data.R).flatten().mean()
            at_id = lpips_net(render(G, w_id), data.R).flatten().mean()
        print(f"  {name:42s} {float(fit):.4f} (w_id {float(at_id):.4f}; "
              f"|W+ - w_id| per layer {float((ws - w_id).norm(dim=-1).mean()):.1f})")


if __name__ == "__main__":
    main()
