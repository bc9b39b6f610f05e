"""Time the StyleGAN2 networks: ms per image for G forward, G forward+backward w.r.t. W+
(what projection does) and D forward, per resolution, batch size and device.

    python benchmarks/bench_networks.py                       # 64/256/1024, batch 1/8, cpu+cuda
    python benchmarks/bench_networks.py --sizes 64 256 --batches 1 8 --devices cpu
    python benchmarks/bench_networks.py --official ~/stylegan2-ada-pytorch   # side by side

Networks use the official configs: channel_base 32768 at 1024 px and 16384 below,
channel_max 512, conv_clamp 256, fp16 on the top 4 resolutions (CUDA only). Weights are
random: speed does not depend on them. Each figure is the best of --repeats runs after
--warmup runs. ``--official`` times NVIDIA's training/networks.py
from a checkout on the same networks (forced to fp32 on CPU, as ours always is).
"""

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
from drfhq_lib.nets import Discriminator, Generator  # noqa: E402


TASKS = ("G fwd", "G fwd+bwd(W+)", "D fwd")


def network_kwargs(res):
    base = 32768 if res >= 1024 else 16384
    g = dict(z_dim=512, c_dim=0, w_dim=512, img_resolution=res, img_channels=3,
             mapping_kwargs={}, synthesis_kwargs=dict(channel_base=base, channel_max=512,
                                                      num_fp16_res=4, conv_clamp=256))
    d = dict(c_dim=0, img_resolution=res, img_channels=3, channel_base=base, channel_max=512,
             num_fp16_res=4, conv_clamp=256)
    return g, d


def build(impl, res, device):
    g_kwargs, d_kwargs = network_kwargs(res)
    if impl == "ours":
        G, D = Generator(**g_kwargs), Discriminator(**d_kwargs)
    else:
        from training import networks as official  # from the --official checkout
        G, D = official.Generator(**g_kwargs), official.Discriminator(**d_kwargs)
    return [m.eval().requires_grad_(False).to(device) for m in (G, D)]


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def tasks(impl, res, batch, device):
    """{task name: zero-argument function} on freshly built networks."""
    G, D = build(impl, res, device)
    extra = {"force_fp32": True} if impl == "official" and device.type == "cpu" else {}
    ws = torch.randn(batch, G.num_ws, 512, device=device)
    img = torch.randn(batch, 3, res, res, device=device)
    c = None if impl == "ours" else torch.zeros(batch, 0, device=device)

    def g_forward():
        with torch.no_grad():
            G.synthesis(ws, noise_mode="const", **extra)

    def g_backward():
        w = ws.clone().requires_grad_(True)
        G.synthesis(w, noise_mode="const", **extra).square().mean().backward()

    def d_forward():
        with torch.no_grad():
            D(img, c, **extra)

    return {"G fwd": g_forward, "G fwd+bwd(W+)": g_backward, "D fwd": d_forward}


def bench(impls, res, batch, device, repeats, warmup):
    """{impl: {task: ms per image}}, best of `repeats` rounds.

    Implementations alternate within each round, so that both see the same machine load.
    """
    cases = {impl: tasks(impl, res, batch, device) for impl in impls}
    best = {impl: dict.fromkeys(fns, float("inf")) for impl, fns in cases.items()}
    for round_idx in range(warmup + repeats):
        for impl, fns in cases.items():
            for name, fn in fns.items():
                sync(device)
                start = time.perf_counter()
                fn()
                sync(device)
                if round_idx >= warmup:
                    elapsed = time.perf_counter() - start
                    best[impl][name] = min(best[impl][name], elapsed)
    return {impl: {name: 1000 * t / batch for name, t in times.items()}
            for impl, times in best.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--devices", nargs="+", default=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--official", metavar="DIR", help="stylegan2-ada-pytorch checkout to "
                        "time side by side (its code is imported and run)")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    impls = ["ours"]
    if args.official:
        sys.path.insert(0, args.official)
        impls.append("official")
    devices = [torch.device(d) for d in args.devices
               if d != "cuda" or torch.cuda.is_available()]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads; ms per image "
          f"(best of {args.repeats}, "
          "the most stable figure on a shared machine)")
    header = f"{'impl':9s}{'device':7s}{'res':>6s}{'batch':>6s}"
    print(header + "".join(f"{t:>16s}" for t in TASKS))
    for device in devices:
        for res in args.sizes:
            for batch in args.batches:
                torch.manual_seed(0)
                results = bench(impls, res, batch, device, args.repeats, args.warmup)
                for impl, result in results.items():
                    row = f"{impl:9s}{device.type:7s}{res:6d}{batch:6d}"
                    print(row + "".join(f"{result[t]:16.1f}" for t in TASKS), flush=True)

if __name__ == "__main__":
    main()
