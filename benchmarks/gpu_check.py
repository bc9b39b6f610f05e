"""The prepared GPU check: does the CUDA path work, and how fast is it? One table, also as JSON.

    python benchmarks/gpu_check.py --device cuda            # under 8 minutes on one H100/H200
    python benchmarks/gpu_check.py --device cpu --quick     # everything small, under a minute
        [--json PATH] [--only cuda_vs_cpu fp16 projection finetune enhance]

Rows (each check runs on its own: one that fails is reported and the others still run):

* ``cuda_vs_cpu``: the same 64 px network (the mini world's G_rendering, else an untrained one)
  on the device and on the CPU in fp32 (TF32 off, the fine-tuning's setting), 8 fixed
  latents: relative L2 error of the images, goal <= 1e-4.
* ``fp16``: the official architecture (StyleGAN2 config-f, 1024 px, random init) with the
  fine-tuning's mixed precision (fp16 in the top 4 resolutions, conv clamp 256) against the
  same network forced to fp32: relative L2 and max abs error (reported; no goal).
* ``projection``: seconds per 1024 px portrait of the projector (Eq. 4, the registry's LPIPS)
  at batch 1 and 8: from w_avg scaled to the paper's 500 steps, and from an encoder's W+
  (an e4e IR-SE50 of random weights: its forward pass is timed, not its quality) scaled to
  ``ENCODER_STEPS``. Goal: <= 2 s per portrait amortised at batch 8 (the paper: 27.6 s).
* ``finetune``: images per second of a full fine-tuning step at 1024 px (config-f, random
  init, batch 32 in rounds of 8, L_sketch and L_color on, mixed precision) as kimg per hour.
  Goal: 40 kimg in <= 20 minutes, i.e. >= 120 kimg/h (the paper: ~40 min on 4 V100s).
* ``enhance``: one end-to-end ``enhance_files`` of the bundled renders (samples/renders) with
  the networks ``drfhq enhance`` would pick (the paper's when installed, else the mini world's).

Timed figures run a warm-up first, then a few steps, synchronised; the table says how many.
With ``--device cpu`` the CUDA rows say "skipped: no CUDA" and their code still runs (device
against CPU, fp16 inactive on a CPU). The exit status is 1 when a check errs or misses a
correctness goal (speed goals are reported, not enforced).
"""

from __future__ import annotations

import argparse
import copy
import inspect
import json
import math
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from drfhq_lib.files import write_json_atomic  # noqa: E402
from drfhq_lib.finetune.distributed import pick_device  # noqa: E402
from drfhq_lib.provenance import write_sidecar  # noqa: E402
from drfhq_lib.nets import Generator  # noqa: E402

CHECKS = ("cuda_vs_cpu", "fp16", "projection", "finetune", "enhance")
PAPER_STEPS = 500
ENCODER_STEPS = 100  # the goal: the 500-step LPIPS within 100 steps from the encoder
PAPER_PROJECTION_S = 27.6  # seconds per 1024 px portrait, 500 steps (the paper)
GOAL_PROJECTION_S = 2.0  # per portrait, amortised at batch 8
GOAL_FINETUNE_KIMG, GOAL_FINETUNE_MIN = 40, 20  # 40 kimg at 1024 px in 20 minutes
GOAL_REL_ERROR = 1e-4
NO_CUDA = "skipped: no CUDA"


class NotAvailable(Exception):
    """A row whose feature is not in this checkout (its reason is the row's status)."""


def settings(quick: bool) -> dict:
    """Sizes of every check: the real ones, or small ones for a CPU in under a minute."""
    if quick:
        return dict(res=32, channel_base=1024, channel_max=32, z_dim=32, batches=(1, 2),
                    steps=2, w_samples=1000, ft_batch=4, ft_batch_gpu=None, ft_repeats=1,
                    ft_sketch_size=64, ft_color_size=64, renders=2, enhance_steps=2,
                    encoder="small")
    return dict(res=1024, channel_base=32768, channel_max=512, z_dim=512, batches=(1, 8),
                steps=20, w_samples=10_000, ft_batch=32, ft_batch_gpu=8, ft_repeats=2,
                ft_sketch_size=512, ft_color_size=256, renders=None, enhance_steps=PAPER_STEPS,
                encoder="ir-se50")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device) -> tuple[float, object]:
    _sync(device)
    start = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - start, out


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().cpu(), b.double().cpu()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def official_generator(s: dict, seed: int = 0) -> Generator:
    """StyleGAN2 config-f (the FFHQ networks' architecture) at ``s['res']``, random weights;
    small widths in quick mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        G = Generator(z_dim=s["z_dim"], w_dim=s["z_dim"], img_resolution=s["res"],
                      channel_base=s["channel_base"], channel_max=s["channel_max"],
                      mapping_kwargs={"num_layers": 8})
    return G.eval().requires_grad_(False)


def _latents(n: int, z_dim: int, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.RandomState(seed).randn(n, z_dim)).float()


def _row(check: str, setting: str, value, unit: str, goal: str = "", status: str = "ok",
         **extra) -> dict:
    return {"check": check, "setting": setting, "value": value, "unit": unit, "goal": goal,
            "status": status, **extra}


# ----------------------------------------------------------------------------- checks

def check_cuda_vs_cpu(device: torch.device, s: dict) -> list[dict]:
    from drfhq_lib.infer.enhance import untrained_generator
    from drfhq_lib.miniworld import models

    if models.available():
        name = models.rendering_name(models.RESOLUTION)
        G, label = models.load_generator(name, "cpu"), name
    else:
        G, label = untrained_generator(64, "cpu"), "stylegan2-untrained-small 64 px (UNTRAINED)"
    z = _latents(8, G.z_dim)
    with torch.no_grad():
        ref = G(z, None, noise_mode="const", force_fp32=True)
        out = copy.deepcopy(G).to(device)(z.to(device), None, noise_mode="const",
                                          force_fp32=True)
    rel, worst = _rel(out, ref), float((out.cpu() - ref).abs().max())
    status = ("ok" if rel <= GOAL_REL_ERROR else "FAIL") if device.type == "cuda" else \
        f"{NO_CUDA} ({device.type} against cpu: code path only)"
    return [_row("cuda_vs_cpu", f"{label}, 8 images, fp32, TF32 off", rel, "rel. L2 error",
                 f"<= {GOAL_REL_ERROR:g}", status, max_abs_error=worst)]


def check_fp16(device: torch.device, s: dict) -> list[dict]:
    from drfhq_lib.finetune.trainer import with_mixed_precision

    G = with_mixed_precision(official_generator(s)).to(device)
    with torch.no_grad():
        ws = G.mapping(_latents(4, G.z_dim).to(device), None)
        fp32 = G.synthesis(ws, noise_mode="const", force_fp32=True)
        mixed = G.synthesis(ws, noise_mode="const")
    rel, worst = _rel(mixed, fp32), float((mixed.float() - fp32).abs().max())
    status = "ok" if device.type == "cuda" else \
        f"{NO_CUDA} (fp16 runs on CUDA only: both passes fp32 here)"
    return [_row("fp16", f"config-f {s['res']} px, random init, 4 images, fp16 top 4 res, "
                 "clamp 256, vs fp32", rel, "rel. L2 error", "report", status,
                 max_abs_error=worst, dtype=str(mixed.dtype))]


def encoder_init(G, device: torch.device, s: dict):
    """``targets -> W+`` of an encoder for G's W+ (random weights: timing only), and its
    label; NotAvailable where this checkout has no encoder-initialised projection."""
    from drfhq_lib.infer.projection import project

    if "init_ws" not in inspect.signature(project).parameters:
        raise NotAvailable("not available: projection takes no init_ws in this checkout")
    try:
        from drfhq_lib.infer.encoder_training import EncoderTrainConfig, build_encoder
        from drfhq_lib.nets.encoders import IR_SE50, TrainedEncoder
    except ImportError as err:
        raise NotAvailable(f"not available: {err}") from None
    if s["encoder"] == "ir-se50":  # e4e's official backbone and heads, at its 256 px input
        cfg, label = EncoderTrainConfig(stages=IR_SE50, head_channels=None, input_size=256), \
            "e4e IR-SE50 256 px"
    else:
        cfg, label = EncoderTrainConfig(), "e4e small (drfhq encoder train's default)"
    enc = build_encoder(G, cfg).eval().requires_grad_(False).to(device)
    latent_avg = G.mapping.w_avg.detach().reshape(1, -1).repeat(G.num_ws, 1).to(device)
    trained = TrainedEncoder(None, cfg.kind, enc, latent_avg)
    return (lambda targets: trained.ws(targets)), label


def check_projection(device: torch.device, s: dict) -> list[dict]:
    from drfhq_lib.infer.projection import ProjectionParams, project, w_statistics
    from drfhq_lib.nets.perceptual import build_lpips

    G = official_generator(s).to(device)
    lpips = build_lpips("auto", device)
    stats = w_statistics(G, ProjectionParams(w_avg_samples=s["w_samples"]), device)
    T, rows = s["steps"], []
    try:
        init, enc_label = encoder_init(G, device, s)
    except NotAvailable as reason:
        init, enc_label = None, str(reason)
    for batch in s["batches"]:
        targets = torch.rand(batch, 3, G.img_resolution, G.img_resolution, device=device) * 2 - 1
        run = lambda steps, **kw: project(G, targets, lpips, ProjectionParams(steps=steps),  # noqa: E731
                                          progress=False, w_stats=stats, **kw)
        run(1)  # warm-up: kernel selection, allocations
        elapsed, _ = _timed(lambda: run(T), device)
        per_portrait = elapsed / T * PAPER_STEPS / batch
        goal = f"<= {GOAL_PROJECTION_S:g} s" if batch == 8 else f"paper {PAPER_PROJECTION_S} s"
        limit = GOAL_PROJECTION_S if batch == 8 else PAPER_PROJECTION_S
        rows.append(_row("projection", f"{s['res']} px, batch {batch}, from w_avg, "
                         f"{PAPER_STEPS} steps (scaled from {T})", per_portrait, "s/portrait",
                         goal, _goal_status(per_portrait <= limit, device), batch=batch,
                         steps=PAPER_STEPS, timed_steps=T, elapsed_s=elapsed))
        setting = f"{s['res']} px, batch {batch}, from the encoder, {ENCODER_STEPS} steps"
        if init is None:
            rows.append(_row("projection", setting, None, "s/portrait", goal, enc_label,
                             batch=batch, steps=ENCODER_STEPS))
            continue
        init(targets)  # warm-up
        enc_s, ws0 = _timed(lambda: init(targets), device)
        run(1, init_ws=ws0)
        elapsed, _ = _timed(lambda: run(T, init_ws=ws0), device)
        per_portrait = (enc_s + elapsed / T * ENCODER_STEPS) / batch
        rows.append(_row("projection", f"{setting} (scaled from {T}; {enc_label}, random "
                         "weights)", per_portrait, "s/portrait", goal,
                         _goal_status(per_portrait <= limit, device), batch=batch,
                         steps=ENCODER_STEPS, timed_steps=T, elapsed_s=elapsed,
                         encoder_s=enc_s))
    return rows


def _goal_status(met: bool, device: torch.device) -> str:
    if device.type != "cuda":
        return f"{NO_CUDA} (goal is for a GPU; measured on {device.type})"
    return "meets goal" if met else "misses goal"


def check_finetune(device: torch.device, s: dict) -> list[dict]:
    from bench_finetune import amortised_step, time_phases, write_source

    from drfhq_lib import finetune

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        source = write_source(tmp / "G.safetensors", s["res"], s["channel_base"],
                              s["channel_max"])
        data = finetune.make_tiny_dataset(tmp / "data.zip", s["res"], count=8)
        cfg = finetune.FinetuneConfig(
            source=str(source), data=str(data), out=str(tmp / "run"), batch=s["ft_batch"],
            batch_gpu=s["ft_batch_gpu"] if device.type == "cuda" else None,
            sketch=True, color=True, sketch_size=s["ft_sketch_size"],
            color_size=s["ft_color_size"], device=str(device), identity=False,
            progress=False, workers=0)
        trainer = finetune.Trainer(cfg, log=None)
        try:
            wall, _ = time_phases(trainer, s["ft_repeats"])
        finally:
            trainer.loader.close()
    step = amortised_step(wall, cfg)
    img_per_s = cfg.batch / step
    kimg_h = img_per_s * 3600 / 1000
    minutes = GOAL_FINETUNE_KIMG / kimg_h * 60
    goal_kimg_h = GOAL_FINETUNE_KIMG / GOAL_FINETUNE_MIN * 60
    phases = dict(wall)
    return [_row("finetune", f"{s['res']} px config-f, batch {cfg.batch} (rounds of "
                 f"{trainer.batch_gpu}), L_sketch + L_color, mixed precision", kimg_h, "kimg/h",
                 f">= {goal_kimg_h:g} kimg/h ({GOAL_FINETUNE_KIMG} kimg in "
                 f"{GOAL_FINETUNE_MIN} min)", _goal_status(kimg_h >= goal_kimg_h, device),
                 img_per_s=img_per_s, step_s=step, minutes_for_40_kimg=minutes,
                 phases_s=phases, repeats=s["ft_repeats"])]


def check_enhance(device: torch.device, s: dict) -> list[dict]:
    from drfhq_lib.infer import enhance
    from drfhq_lib.infer.projection import ProjectionParams, default_batch

    inputs = enhance.demo_inputs(1) if s["renders"] == 2 else sorted(enhance.SAMPLES.glob("*.png"))
    nets = enhance.load_generators(None, None, device, allow_untrained=True)
    batch = default_batch(device, nets.G_rendering.img_resolution)
    params = ProjectionParams(steps=s["enhance_steps"])
    with tempfile.TemporaryDirectory() as tmp:
        elapsed, rows = _timed(lambda: enhance.enhance_files(
            inputs, Path(tmp), nets, params, batch, device=device, progress=False), device)
    ok = [r for r in rows.values() if r["status"] == "ok"]
    lpips = [float(r["final_lpips"]) for r in ok]
    status = "ok" if len(ok) == len(inputs) else "FAIL"
    return [_row("enhance", f"{len(inputs)} bundled renders, {params.steps} steps, batch "
                 f"{batch}, G_rendering {nets.rendering_label}", elapsed, "s", "all ok", status,
                 renders=len(inputs), ok=len(ok), seconds_per_render=elapsed / len(inputs),
                 mean_final_lpips=float(np.mean(lpips)) if lpips else None)]


RUN = {"cuda_vs_cpu": check_cuda_vs_cpu, "fp16": check_fp16, "projection": check_projection,
       "finetune": check_finetune, "enhance": check_enhance}


# ----------------------------------------------------------------------------- report

def _value(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and (v == 0 or 1e-3 <= abs(v) < 1e5):
        return f"{v:.3f}" if abs(v) < 100 else f"{v:.1f}"
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def table(rows: list[dict]) -> str:
    cols = [("check", "check"), ("setting", "setting"), ("value", "value"), ("unit", "unit"),
            ("goal", "goal"), ("status", "status")]
    cells = [[r["check"], r["setting"], _value(r["value"]), r["unit"], r["goal"], r["status"]]
             for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h)
              for i, (h, _) in enumerate(cols)]
    line = lambda c: " | ".join(x.ljust(w) for x, w in zip(c, widths)).rstrip()  # noqa: E731
    return "\n".join([line([h for h, _ in cols]), "-+-".join("-" * w for w in widths),
                      *map(line, cells)])


def environment(device: torch.device) -> dict:
    env = {"torch": torch.__version__, "python": platform.python_version(),
           "device": str(device), "threads": torch.get_num_threads(),
           "cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                   cudnn=torch.backends.cudnn.version())
    return env


def run_checks(device: torch.device, quick: bool, only=CHECKS, log=print) -> list[dict]:
    s = settings(quick)
    rows = []
    for name in only:
        start = time.perf_counter()
        try:
            found = RUN[name](device, s)
        except NotAvailable as reason:
            found = [_row(name, "", None, "", "", str(reason))]
        except Exception as err:  # one failing check must not hide the others
            traceback.print_exc()
            found = [_row(name, "", None, "", "", f"error: {type(err).__name__}: {err}")]
        for r in found:
            r["check_seconds"] = round(time.perf_counter() - start, 2)
        rows += found
        if device.type == "cuda":
            torch.cuda.empty_cache()
        if log:
            log(f"[{name}: {time.perf_counter() - start:.1f} s]", flush=True)
    return rows


def failed(rows: list[dict]) -> bool:
    return any(r["status"] == "FAIL" or r["status"].startswith("error") for r in rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes everywhere (a CPU in under a minute)")
    parser.add_argument("--json", type=Path, default=None,
                        help="where the table goes as JSON (default: "
                             "results/gpu_check[-quick]-DEVICE.json)")
    parser.add_argument("--only", nargs="+", choices=CHECKS, default=list(CHECKS))
    args = parser.parse_args(argv)
    device = pick_device(args.device)  # a bare "cuda" is cuda:0
    if device.type == "cuda":
        if not torch.cuda.is_available():
            parser.error("--device cuda: CUDA is not available here; use --device cpu --quick")
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True  # the fine-tuning's and projector's setting
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 (the fine-tuning's)
        torch.backends.cudnn.allow_tf32 = False
    started = time.perf_counter()
    rows = run_checks(device, args.quick, args.only)
    seconds = time.perf_counter() - started
    print(table(rows))
    print(f"{seconds:.0f} s in all on {device}" + (" (quick)" if args.quick else ""))
    path = args.json or ROOT / "results" / (f"gpu_check{'-quick' if args.quick else ''}-"
                                            f"{device.type}.json")
    record = {"environment": environment(device), "quick": args.quick, "seconds": seconds,
              "settings": {k: list(v) if isinstance(v, tuple) else v
                           for k, v in settings(args.quick).items()},
              "rows": rows}
    write_json_atomic(path, json.loads(json.dumps(record, default=_jsonable)))
    write_sidecar(path, _networks(), {"device": str(device), "quick": args.quick,
                                      "only": list(args.only)}, record["environment"])
    print(f"written {path}")
    return 1 if failed(rows) else 0


def _networks() -> list:
    """The registry networks the checks used (LPIPS, sketch, the mini world's), for the
    provenance sidecar; the config-f networks are random and say so in the rows."""
    from drfhq_lib.miniworld import models
    from drfhq_lib.nets import weights

    found = []
    for name, prefer in (("lpips-vgg16", "auto"), ("lpips-heads", "auto"),
                         ("dfe-sketch", "auto")):
        try:
            found.append(weights.resolve(name, prefer))
        except Exception:  # a network this checkout names otherwise or lacks: not recorded
            pass
    if models.available():
        found += [weights.resolve(models.rendering_name(models.RESOLUTION), "official"),
                  weights.resolve(models.real_name(models.RESOLUTION), "official")]
    return found


def _jsonable(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return str(v)


if __name__ == "__main__":
    sys.exit(main())
