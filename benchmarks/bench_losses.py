"""Milliseconds per call of the losses and descriptors, and the scale of L_sketch with HED.

    python benchmarks/bench_losses.py [--device cpu|cuda|all] [--repeat 3] [--sketch-scale]
                                      [--pairs DIR]

Times (batch 1 and 4): LPIPS-VGG16 at 256 px, L_color from 1024 px and from 256 px inputs,
L_sketch at 512 px (HED substitute; DFE's generator with random weights for its cost), L_n over
the 17 noise maps of a 1024 px StyleGAN2 generator (one call per image, as the projector does),
and the identity descriptor per image (dlib, and IR-101 with random weights for its cost).
Networks run on what the registry resolves; random-weight rows are marked "timing only".

``--sketch-scale`` prints L_sketch (per-image L1 sum, HED) and λs L_sketch next to λc L_color on
pairs that keep identity (photo vs smoothed/recoloured photo, vs a 4 px shift) and pairs that do
not (different people; ``--pairs DIR`` adds consecutive images of a folder, e.g. renders).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from drfhq_lib.nets import identity  # noqa: E402
from drfhq_lib.finetune import losses  # noqa: E402
from drfhq_lib.nets import perceptual  # noqa: E402
from drfhq_lib.nets import sketch  # noqa: E402
from drfhq_lib.data.images import pil_to_tensor  # noqa: E402

NOISE_SIZES = [4] + [r for r in (8, 16, 32, 64, 128, 256, 512, 1024) for _ in range(2)]


def timed(fn, repeat: int, device: torch.device) -> float:
    """Median milliseconds of ``fn()`` after one warm-up call."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    fn()
    sync()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times))


def photo(name: str, size: int, device) -> torch.Tensor:
    from PIL import Image

    image = Image.open(ROOT / "tests" / "data" / f"{name}.jpg").convert("RGB")
    w, h = image.size
    side = min(w, h)
    image = image.crop(((w - side) // 2, 0, (w - side) // 2 + side, side)).resize((size, size))
    return pil_to_tensor(image, device)


def rows_for(device: torch.device, batch: int, repeat: int, nets) -> list[tuple[str, float]]:
    lpips_net, hed, dfe, ir101, dlib_embedder = nets
    x1024 = photo("obama", 1024, device).expand(batch, -1, -1, -1).contiguous()
    y1024 = photo("obama2", 1024, device).expand(batch, -1, -1, -1).contiguous()
    x256, y256 = perceptual.resize(x1024, 256), perceptual.resize(y1024, 256)
    x512, y512 = perceptual.resize(x1024, 512), perceptual.resize(y1024, 512)
    noise = [torch.randn(1, 1, r, r, device=device) for r in NOISE_SIZES]
    faces112 = torch.rand(batch, 3, 112, 112, device=device) * 2 - 1
    rows = []
    with torch.no_grad():
        rows.append(("LPIPS-VGG16 256 px", timed(lambda: lpips_net(x256, y256), repeat, device)))
        rows.append(("L_color from 1024 px", timed(
            lambda: losses.color_loss(lpips_net, x1024, y1024), repeat, device)))
        rows.append(("L_color from 256 px", timed(
            lambda: losses.color_loss(lpips_net, x256, y256), repeat, device)))
        rows.append(("L_sketch 512 px, HED", timed(
            lambda: losses.sketch_loss(hed, x512, y512), repeat, device)))
        rows.append(("L_sketch 512 px, DFE (timing only)", timed(
            lambda: losses.sketch_loss(dfe, x512, y512), repeat, device)))
        rows.append(("IR-101 112 px (timing only)", timed(lambda: ir101(faces112), repeat, device)))
    noisy = [n.clone().requires_grad_() for n in noise]

    def noise_step():
        for _ in range(batch):
            losses.noise_regularization(noisy).backward()
    rows.append(("L_n 1024 px maps, fwd+bwd", timed(noise_step, repeat, device)))
    rows.append(("dlib descriptor 1024 px (detect+align+embed)", timed(
        lambda: dlib_embedder.embed(x1024), max(1, repeat // 2), device)))
    # L_color + L_sketch forward and backward, as one fine-tuning step pays them
    render = y512.clone().requires_grad_()

    def both():
        (losses.LAMBDA_SKETCH * losses.sketch_loss(hed, x512, render)
         + losses.LAMBDA_COLOR * losses.color_loss(lpips_net, x512, render)).backward()
    rows.append(("L_sketch + L_color 512 px, fwd+bwd", timed(both, repeat, device)))
    return rows


def load_nets(device: torch.device):
    torch.manual_seed(0)
    lpips_net = perceptual.build_lpips("auto", device)
    hed = sketch.build_sketch("substitute", device)
    dfe = sketch.DFESketchGenerator().eval().requires_grad_(False).to(device)
    ir101 = identity.IR101().eval().requires_grad_(False).to(device)
    dlib_embedder = identity.build_embedder("substitute")
    return lpips_net, hed, dfe, ir101, dlib_embedder


def sketch_scale(device: torch.device, pairs_dir: Path | None) -> None:
    """L_sketch (HED) and the weighted terms on identity-keeping and identity-changing pairs."""
    hed = sketch.build_sketch("substitute", device)
    lpips_net = perceptual.build_lpips("auto", device)
    a, b, c = (photo(n, 512, device) for n in ("obama", "obama2", "biden"))
    smooth = (perceptual.gaussian_blur(a, 7, 2.0) * 1.1 + 0.05).clamp(-1, 1)  # render-like
    shifted = torch.roll(a, shifts=(4, 4), dims=(2, 3))
    pairs = [("photo vs smoothed+recoloured photo", a, smooth), ("photo vs 4 px shift", a, shifted),
             ("obama vs obama2 (same person)", a, b), ("obama vs biden", a, c)]
    if pairs_dir is not None:
        from PIL import Image

        files = sorted(p for p in Path(pairs_dir).iterdir()
                       if p.suffix.lower() in (".png", ".jpg") and "_" not in p.stem)[:6]
        imgs = [perceptual.resize(pil_to_tensor(Image.open(f), device), 512) for f in files]
        pairs += [(f"{files[i].name} vs {files[i + 1].name}", imgs[i], imgs[i + 1])
                  for i in range(0, len(imgs) - 1, 2)]
    print(f"\nL_sketch scale with {hed.label} (per-image L1 sum over 3 x 512 x 512) and "
          f"L_color with {lpips_net.label}")
    print(f"{'pair':44s} {'L_sketch':>10s} {'mean|d|':>8s} {'λs·L_s':>8s} {'L_color':>8s} "
          f"{'λc·L_c':>8s}")
    with torch.no_grad():
        for name, x, y in pairs:
            ls = losses.sketch_loss(hed, x, y).item()
            lc = losses.color_loss(lpips_net, x, y).item()
            print(f"{name:44s} {ls:10.0f} {ls / (3 * 512 * 512):8.4f} "
                  f"{losses.LAMBDA_SKETCH * ls:8.3f} {lc:8.4f} {losses.LAMBDA_COLOR * lc:8.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="all", choices=["cpu", "cuda", "all"])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batches", default="1,4")
    parser.add_argument("--sketch-scale", action="store_true")
    parser.add_argument("--pairs", type=Path, default=None)
    args = parser.parse_args()
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    devices = [torch.device(d) for d in devices if d == "cpu" or torch.cuda.is_available()]
    for device in devices:
        nets = load_nets(device)
        label = torch.cuda.get_device_name(device) if device.type == "cuda" else \
            f"CPU, {torch.get_num_threads()} threads"
        print(f"\n{device.type} ({label}); LPIPS trunk: {nets[0].label}; ms per call, median "
              f"of {args.repeat}")
        batches = [int(b) for b in args.batches.split(",")]
        table = {b: rows_for(device, b, args.repeat, nets) for b in batches}
        print(f"{'':48s}" + "".join(f"{'batch ' + str(b):>12s}" for b in batches))
        for i, (name, _) in enumerate(table[batches[0]]):
            print(f"{name:48s}" + "".join(f"{table[b][i][1]:12.1f}" for b in batches))
    if args.sketch_scale:
        sketch_scale(devices[-1], args.pairs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
