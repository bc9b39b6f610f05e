"""Training speed of the fine-tuning: images per second of a full step.

A step is Gmain + Dmain every time, Greg every 4 steps and Dreg every 16 (lazy regularisation),
plus the G EMA update; each phase is timed on its own (after a warm-up step) and the step time is
their amortised sum. Measured with the identity terms on (L_sketch at 512 px, L_color at 256 px,
the registry's networks) and off (the baseline), for the generator widths of the official
'stylegan2' config (channel_base 32768, channel_max 512; 512-d z and w, 8 mapping layers)
unless --channel-max says otherwise.

    python benchmarks/bench_finetune.py --res 64 128 256 --batch 4
    python benchmarks/bench_finetune.py --device cuda --batch 32
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from drfhq_lib import finetune  # noqa: E402
from drfhq_lib.nets import Discriminator, Generator, save_network  # noqa: E402


def write_source(path: Path, resolution: int, channel_base: int, channel_max: int) -> Path:
    torch.manual_seed(0)
    kwargs = dict(img_resolution=resolution, channel_base=channel_base, channel_max=channel_max)
    G = Generator(z_dim=512, w_dim=512, num_layers=8, **kwargs)
    save_network(path, {"G": G, "G_ema": copy.deepcopy(G), "D": Discriminator(**kwargs)},
                 {"untrained": True, "label": "benchmark"})
    return path


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_phases(trainer, repeats: int) -> tuple[dict[str, float], dict[str, float]]:
    """Wall-clock and process-CPU seconds per call of each phase (and of the EMA update), after
    one warm-up step. On a shared CPU the CPU seconds are the steadier measure."""
    reals = trainer.loader.get(0).to(trainer.device)
    z = trainer._latents()
    trainer.step = 0  # every phase runs at step 0
    for phase, phase_z in zip(trainer.phases, z):
        trainer._run_phase(phase, reals, phase_z)  # warm-up (kernel selection, allocations)
    wall, cpu = {}, {}
    work = [(phase.name, lambda phase=phase, phase_z=phase_z:
             trainer._run_phase(phase, reals, phase_z))
            for phase, phase_z in zip(trainer.phases, z)]
    for name, run in work + [("ema", trainer._update_ema)]:
        _sync(trainer.device)
        start, start_cpu = time.perf_counter(), time.process_time()
        for _ in range(repeats):
            run()
        _sync(trainer.device)
        wall[name] = (time.perf_counter() - start) / repeats
        cpu[name] = (time.process_time() - start_cpu) / repeats
    return wall, cpu


def amortised_step(seconds: dict[str, float], cfg) -> float:
    return (seconds["Gmain"] + seconds["Dmain"] + seconds["ema"]
            + seconds["Greg"] / cfg.G_reg_interval + seconds["Dreg"] / cfg.D_reg_interval)


def bench(resolution: int, identity: bool, args, folder: Path) -> dict:
    channel_base = args.channel_base
    source = write_source(folder / f"G{resolution}.safetensors", resolution, channel_base,
                          args.channel_max)
    data = finetune.make_tiny_dataset(folder / f"data{resolution}.zip", resolution,
                                      count=args.batch)
    cfg = finetune.FinetuneConfig(
        source=str(source), data=str(data), out=str(folder / f"run{resolution}{identity}"),
        batch=args.batch, sketch=identity, color=identity, device=args.device,
        identity=False, progress=False, workers=0, prefer=args.prefer)
    trainer = finetune.Trainer(cfg, log=None)
    wall, cpu = time_phases(trainer, args.repeats)
    step, step_cpu = amortised_step(wall, cfg), amortised_step(cpu, cfg)
    return {"res": resolution, "identity": identity, "img_per_s": args.batch / step,
            "step_s": step, "cpu_s_per_img": step_cpu / args.batch,
            **{k: round(v, 3) for k, v in wall.items()}}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--res", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--channel-base", type=int, default=32768)
    parser.add_argument("--channel-max", type=int, default=512)
    parser.add_argument("--identity", choices=("both", "on", "off"), default="both")
    parser.add_argument("--prefer", default="auto", choices=("auto", "official", "substitute"))
    args = parser.parse_args(argv)
    modes = {"both": (False, True), "on": (True,), "off": (False,)}[args.identity]
    print(f"device {args.device}, torch threads {torch.get_num_threads()}, batch {args.batch}, "
          f"channel_base {args.channel_base}, channel_max {args.channel_max}")
    print(f"{'res':>5} {'sketch+colour':>13} {'img/s':>8} {'step s':>8} {'CPU s/img':>10}  "
          "phases (wall s per call)")
    with tempfile.TemporaryDirectory() as tmp:
        for resolution in args.res:
            for identity in modes:
                r = bench(resolution, identity, args, Path(tmp))
                phases = " ".join(f"{k} {r[k]}" for k in ("Gmain", "Greg", "Dmain", "Dreg", "ema"))
                print(f"{r['res']:>5} {'on' if identity else 'off':>13} {r['img_per_s']:>8.3f} "
                      f"{r['step_s']:>8.2f} {r['cpu_s_per_img']:>10.2f}  {phases}", flush=True)


if __name__ == "__main__":
    main()
