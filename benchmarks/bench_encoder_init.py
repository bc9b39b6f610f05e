"""Encoder-initialised projection against the paper's w_avg start, on the mini world's
held-out identities: steps to equal LPIPS, seconds per portrait, and the ground-truth score.

    python benchmarks/bench_encoder_init.py [--count 10] [--baseline-steps 500]
        [--steps 10 25 50 100] [--no-noise-steps 100] [--encoder FILE] [--heldout DIR]
        [--out DIR] [--batch 10]

Each held-out identity's R render (seed 2: never seen in training; rendered and aligned under
OUT/heldout unless --heldout names an aligned folder) is projected into G_rendering_mini
(``stylegan2-miniworld-R64``) from w_avg with the paper's 500 steps, from w_avg with as many
steps as the longest encoder run, and from the encoder's W+ with each of ``--steps`` (each a
complete run of the projector with its schedules scaled to that many steps), and from the
encoder's W+ without the projector's latent noise (``--no-noise-steps``: the noise explores
around w_avg, which a good start does not need; the control ``w_avg, K steps, no latent noise``
tells the start's share from the noise's). Reported per run:

* ``final LPIPS``: the projector's own last distance (with its optimised noise maps), what
  ``drfhq enhance`` writes into its manifest; ``recon LPIPS``: G_rendering(W+) with the
  generator's constant noise against the R render;
* the ground truth: G_real_mini(W+) against the identity's P render (LPIPS, PSNR, landmark
  error, as eval/groundtruth.py and notebook 16), with the per-identity difference from the
  500-step w_avg run and its 95 % bootstrap interval: "no worse" when the interval reaches
  the better side of zero;
* seconds per portrait on this machine (wall and process CPU; the batch is the whole set),
  the encoder's forward pass included.

``steps to equal LPIPS``: the fewest encoder-run steps whose mean final LPIPS is at or below
the 500-step w_avg run's. Latents are files under OUT, so an interrupted run resumes; timings
of finished runs are kept in OUT/<run>/timing.json. LPIPS is the registry's (the HED-trunk
substitute when torchvision's VGG16 is absent: values comparable within this benchmark only).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from drfhq_lib.eval import groundtruth
from drfhq_lib.files import write_json_atomic
from drfhq_lib.infer.encoder_init import load_encoder_init, miniworld_encoder
from drfhq_lib.infer.projection import ProjectionParams, load_latent, project_to_files, render
from drfhq_lib.miniworld import benchmark, models
from drfhq_lib.nets.perceptual import build_lpips

BETTER = {"lpips": -1, "psnr": 1, "landmarks": -1}  # the sign of "better" per GT column
BUILD_HELDOUT = Path("runs/miniworld/aligned/heldout")  # `drfhq miniworld train`'s (notebook 16)


def run_projection(name: str, G, data, out: Path, lpips_net, steps: int, batch: int,
                   init=None, noise: float = ProjectionParams.initial_noise_factor
                   ) -> tuple[torch.Tensor, list[float], dict]:
    """(W+ [N, num_ws, w_dim], final LPIPS per id, timing) of one run, resumable; ``noise``:
    the projector's initial latent noise factor."""
    folder = out / name
    timing_file = folder / "timing.json"
    timing = json.loads(timing_file.read_text()) if timing_file.exists() else {}
    targets = dict(zip(data.ids, data.R))
    todo = [i for i in data.ids if not (folder / f"{i}.npz").exists()]
    if todo:
        params = ProjectionParams(steps=steps, loss_size=G.img_resolution,
                                  initial_noise_factor=noise)
        wall, cpu = time.perf_counter(), time.process_time()
        project_to_files(G, targets, folder, lpips_net, params, batch, True, init=init)
        timing = {"wall_s": timing.get("wall_s", 0) + time.perf_counter() - wall,
                  "cpu_s": timing.get("cpu_s", 0) + time.process_time() - cpu,
                  "portraits": timing.get("portraits", 0) + len(todo), "batch": batch,
                  "steps": steps, "threads": torch.get_num_threads()}
        write_json_atomic(timing_file, timing)
    latents = [load_latent(folder / f"{i}.npz") for i in data.ids]
    return (torch.stack([l["ws"] for l in latents]), [l["final_distance"] for l in latents],
            timing)


def encoder_only(encoder_init, data, out: Path) -> tuple[torch.Tensor, dict]:
    wall, cpu = time.perf_counter(), time.process_time()
    ws = encoder_init(data.R)
    timing = {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu,
              "portraits": len(data.ids), "batch": len(data.ids), "steps": 0}
    write_json_atomic(out / "encoder-only" / "timing.json", timing)
    return ws, timing


def difference_interval(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    low, high = groundtruth.bootstrap_interval(d)
    return float(np.nanmean(d)), low, high


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10, help="held-out identities (10)")
    parser.add_argument("--baseline-steps", type=int, default=500)
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 25, 50, 100],
                        help="encoder-initialised runs (steps each)")
    parser.add_argument("--no-noise-steps", type=int, nargs="*", default=[100],
                        help="encoder-initialised runs without the projector's latent noise "
                             "(its exploration around w_avg; a good start needs none)")
    parser.add_argument("--encoder", type=Path, default=None,
                        help="encoder file (default: the committed encoder-miniworld-R64)")
    parser.add_argument("--heldout", type=Path, default=None,
                        help="aligned held-out folder (default: runs/miniworld/aligned/heldout "
                             "of `drfhq miniworld train` when there, else OUT/heldout, "
                             "rendered if missing)")
    parser.add_argument("--out", type=Path, default=Path("out/bench_encoder_init"))
    parser.add_argument("--batch", type=int, default=None, help="portraits per batch (all)")
    parser.add_argument("--json", type=Path, default=None, help="(default OUT/results.json)")
    parser.add_argument("--prefer", default="auto")
    args = parser.parse_args()

    device = torch.device("cpu")
    heldout = args.heldout or (BUILD_HELDOUT if (BUILD_HELDOUT / "identities.jsonl").exists()
                               else args.out / "heldout")
    data = benchmark.load_heldout(models.heldout_folder(heldout, args.count), args.count)
    batch = args.batch or len(data.ids)
    mini = models.load(device, variants=("full",))
    G, G_real = mini.G_rendering, mini.G_real
    lpips_net = build_lpips(args.prefer, device)
    committed = miniworld_encoder()
    if args.encoder is None and committed is None:
        raise SystemExit("no committed mini-world encoder: pass --encoder FILE, or train one "
                         "with tools/make_miniworld_encoder.sh")
    encoder_file = args.encoder or committed.path
    init, notes = load_encoder_init(encoder_file, G, device)
    for note in notes:
        print("note:", note)
    longest = max(args.steps)
    noise = ProjectionParams.initial_noise_factor
    runs = {f"w_avg, {args.baseline_steps} steps": ("w_avg", args.baseline_steps, noise),
            f"w_avg, {longest} steps": ("w_avg", longest, noise),
            **{f"encoder, {k} steps": ("encoder", k, noise) for k in sorted(args.steps)},
            **{f"encoder, {k} steps, no latent noise": ("encoder", k, 0.0)
               for k in sorted(args.no_noise_steps)}}
    if args.no_noise_steps:  # the control: is it the start, or only the absence of noise?
        runs[f"w_avg, {longest} steps, no latent noise"] = ("w_avg", longest, 0.0)
    results, ws_of = {}, {}
    ws_of["encoder only"], timing = encoder_only(init, data, args.out)
    results["encoder only"] = {"init": "encoder", "steps": 0, "final_lpips": None,
                               "timing": timing}
    for label, (start, steps, factor) in runs.items():
        slug = f"{start}-{steps}" + ("" if factor == noise else f"-noise{factor:g}")
        ws, final, timing = run_projection(slug, G, data, args.out, lpips_net, steps, batch,
                                           init if start == "encoder" else None, factor)
        ws_of[label] = ws
        results[label] = {"init": start, "steps": steps, "final_lpips": float(np.mean(final)),
                          "final_lpips_per_id": final, "timing": timing}
    baseline = f"w_avg, {args.baseline_steps} steps"
    scores = {}
    with torch.no_grad():
        for label, ws in ws_of.items():
            recon = render(G, ws)
            results[label]["recon_lpips"] = float(lpips_net(recon, data.R).mean())
            scores[label] = groundtruth.score(render(G_real, ws), data.P, data.P_landmarks,
                                              data.true_landmarks, lpips_net)
    for label, s in scores.items():
        row = s.row(label)
        results[label]["groundtruth"] = {k: row[k] for k in row if k not in ("method",)}
        results[label]["vs_baseline"] = {}
        for col, sign in BETTER.items():
            mean, low, high = difference_interval(getattr(s, col), getattr(scores[baseline], col))
            no_worse = (low <= 0) if sign < 0 else (high >= 0)
            results[label]["vs_baseline"][col] = {"mean_diff": mean, "ci_low": low,
                                                  "ci_high": high, "no_worse": bool(no_worse)}
    target = results[baseline]["final_lpips"]
    reached = [r["steps"] for r in results.values()
               if r["init"] == "encoder" and r["final_lpips"] is not None
               and r["final_lpips"] <= target]
    steps_to_equal = min(reached) if reached else None

    print(f"\nmini world ({models.WORLD_NOTE}); {len(data.ids)} held-out identities (seed 2); "
          f"G_rendering {mini.labels['full']}; LPIPS {lpips_net.label}; encoder {encoder_file}; "
          f"threads {torch.get_num_threads()}\n")
    head = (f"{'run':37} {'final LPIPS':>11} {'recon LPIPS':>11} {'GT LPIPS':>9} "
            f"{'GT PSNR':>8} "
            f"{'GT lmk':>7} {'GT no worse':>11} {'s/portrait':>10} {'CPU s':>7}")
    print(head)
    print("-" * len(head))
    for label, r in results.items():
        t, gt = r["timing"], r["groundtruth"]
        per = t["wall_s"] / max(t["portraits"], 1)
        cpu = t["cpu_s"] / max(t["portraits"], 1)
        final = f"{r['final_lpips']:.4f}" if r["final_lpips"] is not None else "-"
        ok = "baseline" if label == baseline else \
            ("yes" if all(v["no_worse"] for v in r["vs_baseline"].values()) else "NO")
        print(f"{label:37} {final:>11} {r['recon_lpips']:>11.4f} {gt['lpips']:>9.4f} "
              f"{gt['psnr']:>8.2f} {gt['landmarks']:>7.4f} {ok:>11} {per:>10.2f} {cpu:>7.2f}")
    print(f"\nsteps to equal LPIPS: w_avg {args.baseline_steps} (final LPIPS {target:.4f}); "
          + (f"encoder {steps_to_equal} ({args.baseline_steps / steps_to_equal:.0f}x fewer)"
             if steps_to_equal else f"encoder: not reached within {longest} steps"))
    summary = {"count": len(data.ids), "ids": data.ids, "heldout": str(heldout),
               "baseline": baseline,
               "baseline_final_lpips": target, "steps_to_equal_lpips": steps_to_equal,
               "encoder": str(encoder_file), "lpips": lpips_net.label, "world": models.WORLD_NOTE,
               "threads": torch.get_num_threads(), "runs": results, "notes": notes}
    path = args.json or args.out / "results.json"
    write_json_atomic(path, summary)
    print(f"results: {path}")


if __name__ == "__main__":
    main()
