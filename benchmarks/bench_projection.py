"""Seconds per portrait per 100 projection steps at batch 1, 2 and 8, at 256 and 1024 px.

    python benchmarks/bench_projection.py [--sizes 256 1024] [--batches 1 2 8] [--steps 5]
        [--devices cpu cuda]

Untrained generators of the official architecture (channel_base 32768, channel_max 512 at 1024
px as FFHQ; 16384 at 256 px) and the LPIPS the registry resolves. A few timed steps after one
warm-up step are scaled to 100 steps; the result is per portrait, so batched throughput is
directly comparable with one at a time. Batch 1 is the official projector's loop (one target,
the same schedules and losses). The CPU rows run with drfhq's allocator policy (see
drfhq_lib/allocator.py); `DRFHQ_MALLOC=system` measures glibc's default for comparison. Both
wall-clock and process CPU seconds are printed: on a shared machine the CPU seconds are the
steadier figure.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from drfhq_lib.nets import Generator
from drfhq_lib.nets.perceptual import build_lpips
from drfhq_lib.infer.projection import ProjectionParams, default_batch, project, w_statistics


def seconds_per_portrait_per_100_steps(G, lpips, batch: int, steps: int, device
                                       ) -> tuple[float, float]:
    """(wall-clock, process CPU) seconds per portrait per 100 steps."""
    targets = torch.rand(batch, 3, G.img_resolution, G.img_resolution, device=device) * 2 - 1
    stats = w_statistics(G, ProjectionParams(w_avg_samples=1000), device)
    project(G, targets, lpips, ProjectionParams(steps=1), progress=False, w_stats=stats)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start, cpu = time.perf_counter(), time.process_time()
    project(G, targets, lpips, ProjectionParams(steps=steps), progress=False, w_stats=stats)
    if device.type == "cuda":
        torch.cuda.synchronize()
    scale = 100 / steps / batch
    return (time.perf_counter() - start) * scale, (time.process_time() - cpu) * scale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 8])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--devices", nargs="+",
                        default=["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    args = parser.parse_args()
    print(f"allocator policy: {os.environ.get('DRFHQ_MALLOC', 'keep freed memory')}, "
          f"threads: {torch.get_num_threads()}")
    print(f"{'device':6} {'size':>5} {'batch':>5} {'s/portrait/100 steps':>22} {'CPU s':>8}")
    for name in args.devices:
        device = torch.device(name)
        lpips = build_lpips("auto", device)
        for size in args.sizes:
            base = 32768 if size >= 1024 else 16384
            G = Generator(z_dim=512, w_dim=512, img_resolution=size, channel_base=base,
                          channel_max=512).eval().requires_grad_(False).to(device)
            for batch in args.batches:
                if device.type == "cpu" and batch > default_batch(device, size):
                    print(f"{name:6} {size:5d} {batch:5d} {'skipped: memory':>22} "
                          f"(about 5 GB per 1024 px portrait)", flush=True)
                    continue
                wall, cpu = seconds_per_portrait_per_100_steps(G, lpips, batch, args.steps, device)
                print(f"{name:6} {size:5d} {batch:5d} {wall:22.2f} {cpu:8.1f}", flush=True)
    print(f"LPIPS: {lpips.label}")


if __name__ == "__main__":
    main()
