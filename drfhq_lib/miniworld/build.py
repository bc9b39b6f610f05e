"""``drfhq miniworld train``: every mini-world network from scratch, resumable step by step.

1. render three disjoint sets of identities (seeds 0, 1, 2): P-style portraits to train
   G_real_mini, R-style portraits to fine-tune it (unpaired: other identities), held-out pairs
   for the ground-truth benchmark;
2. FFHQ-align them from the landmarks the renderer projects;
3. train G_real_mini (:mod:`.real_training`);
4. fine-tune it into G_rendering_mini with ``drfhq finetune`` itself, the paper's procedure
   (mapping and ToRGB frozen, ADA, x-flips, L_sketch + L_color), once per Fig. 10 variant;
5. export the networks (fp16) with their provenance into ``drfhq_lib/miniworld/networks``.

Each step skips what is finished, so rerunning the command after an interruption resumes it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from drfhq_lib.files import atomic_path, sha256_file, write_json_atomic
from drfhq_lib.finetune.losses import LAMBDA_SKETCH, SKETCH_SIZE
from drfhq_lib.miniworld import aligned
from drfhq_lib.miniworld.errors import MiniworldError
from drfhq_lib.miniworld.real_training import RealMiniConfig, RealMiniTrainer
from drfhq_lib.nets import load_network, save_network
from drfhq_lib.nets.state_dict import load_weights_only

NETWORKS_DIR = Path(__file__).with_name("networks")
SETS = {"train": 0, "finetune": 1, "heldout": 2}  # set name -> render seed
# Fig. 10's variants: (L_sketch, L_color).
VARIANTS = {"baseline": (False, False), "no-sketch": (False, True), "no-color": (True, False),
            "full": (True, True)}


def real_name(resolution: int) -> str:
    return f"stylegan2-miniworld-P{resolution}"


def rendering_name(resolution: int, variant: str = "full") -> str:
    suffix = "" if variant == "full" else f"-{variant}"
    return f"stylegan2-miniworld-R{resolution}{suffix}"


@dataclass
class BuildPlan:
    out: str = "runs/miniworld"
    resolution: int = 64
    render_size: int = 128  # portraits are rendered larger than the aligned crop they yield
    render_supersample: int = 1  # the crop's 2x area downsampling antialiases enough
    # 3000 P identities with 64 kimg: fewer leave G_real_mini's own held-out bound (LPIPS of
    # G(w_id) to P) above the R input's, so no method ending in it could beat the input
    # (benchmarks/bench_miniworld_real_scale.py: 400 ids 0.199, 1400 0.163, 3000 0.151).
    counts: dict = field(default_factory=lambda: {"train": 3000, "finetune": 250,
                                                  "heldout": 100})
    real: RealMiniConfig = field(default_factory=lambda: RealMiniConfig(warm_kimg=64.0))
    snapshot_kimg: float = 2.0
    finetune_kimg: float = 2.0
    finetune_batch: int = 8
    # The paper's λc = 3.75e3 is set for VGG16 LPIPS at 256 px. With the mini world's substitute
    # LPIPS at 64 px, λc·L_color at 3.75e3 is ~16x the adversarial term: G_rendering stays at
    # G_real (Tab. 2 analogue 0.2106 vs G_real's own 0.2109; 375 gives 0.2111). At 37.5 the two
    # terms are of one size and the Tab. 2 analogue drops to 0.168
    # (benchmarks/bench_miniworld_sharper.py --lambda-color; this build: 0.111, G_real 0.162).
    lambda_color: float = 37.5
    variants: tuple = tuple(VARIANTS)
    export_dir: str = str(NETWORKS_DIR)
    device: str = "cpu"

    @property
    def color_blur(self) -> tuple[int, float]:
        """L_color's Gaussian (kernel px, sigma px): 13 px, σ 10 at 256 px, shrunk with the
        image (an odd kernel of at least 3)."""
        r = self.resolution
        return max(3, round(13 * r / 256) | 1), 10.0 * r / 256

    @property
    def finetune_flags(self) -> list[str]:
        """The loss sizes scaled to the resolution: S and the blurred LPIPS see the image at its
        own size, λs grows by the pixel ratio (L_sketch is a sum over pixels, Sec. 3.2's λs is
        for 512 px) and the blur kernel shrinks with the image (13 px, σ 10 at 256 px). The
        schedules keep the paper's ratios to its 40 kimg: G_ema's half-life a quarter of the
        run (10 kimg there; at 10 kimg here G_ema would keep 87 % of the source after 2 kimg),
        ADA's adjustment speed 0.4 of the run (100 kimg there). λc is the mini world's own
        (see ``lambda_color``)."""
        r, kimg = self.resolution, self.finetune_kimg
        return ["--sketch-size", str(r), "--color-size", str(r),
                "--ema-kimg", f"{kimg / 4:g}", "--ada-kimg", f"{kimg * 2.5:g}",
                "--lambda-sketch", f"{LAMBDA_SKETCH * (SKETCH_SIZE / r) ** 2:g}",
                "--lambda-color", f"{self.lambda_color:g}",
                "--blur-size", str(self.color_blur[0]),
                "--blur-sigma", f"{self.color_blur[1]:g}",
                "--kimg", f"{self.finetune_kimg:g}", "--batch", str(self.finetune_batch),
                "--snap", f"{max(self.finetune_kimg / 3, 0.05):g}", "--gamma", "0.5",
                "--no-identity", "--device", self.device]

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["variants"] = list(self.variants)
        return d

    def folder(self, *parts: str) -> Path:
        return Path(self.out).joinpath(*parts)


# ------------------------------------------------------------------------------ steps

def render_sets(plan: BuildPlan) -> None:
    from drfhq_lib.miniworld.render_cli import render_dataset

    for name, seed in SETS.items():
        out = plan.folder("renders", name)
        render_dataset(out, plan.counts[name], seed, plan.render_size,
                       supersample=plan.render_supersample)
        aligned.align_folder(out, plan.folder("aligned", name), plan.resolution)


def _snapshot(trainer: RealMiniTrainer, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    save_network(folder / "snapshot.safetensors",
                 {"G": trainer.G, "G_ema": trainer.G_ema, "D": trainer.D},
                 {"kimg": trainer.kimg, "config": trainer.cfg.as_dict()})
    with atomic_path(folder / "state.pt") as tmp:
        torch.save(trainer.state(), tmp)


def train_real(plan: BuildPlan, progress: bool = True) -> RealMiniTrainer:
    """Train (or resume, or just reload) G_real_mini on the aligned P renders of the train set."""
    _, images, z = aligned.load_aligned(plan.folder("aligned", "train"), "P")
    trainer = RealMiniTrainer(plan.real, z, images, plan.device)
    folder = plan.folder("g_real")
    if (folder / "state.pt").exists():
        nets = load_network(folder / "snapshot.safetensors")
        state = load_weights_only(folder / "state.pt", "G_real_mini training state",
                                  "delete it to restart the training from its snapshot")
        trainer.load_state(nets, state)
    total = plan.real.total_kimg
    next_snapshot = trainer.kimg + plan.snapshot_kimg
    with tqdm(total=round(total * 1000), initial=trainer.images_seen, unit="img",
              desc="G_real_mini", disable=not progress) as bar:
        while not trainer.done:
            losses = trainer.step()
            bar.update(plan.real.batch)
            bar.set_postfix(phase=trainer.phase, **{k: f"{v:.3f}" for k, v in losses.items()})
            if trainer.kimg >= next_snapshot or trainer.done:
                _snapshot(trainer, folder)
                next_snapshot += plan.snapshot_kimg
    return trainer


def finetune_variants(plan: BuildPlan) -> dict[str, Path]:
    """Run ``drfhq finetune`` once per variant on the aligned R renders of the finetune set."""
    from drfhq_lib import cli

    source = plan.folder("export-source", f"{real_name(plan.resolution)}.safetensors")
    if not source.exists():
        source.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(plan.folder("g_real", "snapshot.safetensors"), source)
    data = plan.folder("aligned", "finetune", "R")
    finals = {}
    for variant in plan.variants:
        sketch, color = VARIANTS[variant]
        out = plan.folder("finetune", variant)
        flags = ["finetune", "--source", str(source), "--data", str(data), "--out", str(out),
                 *plan.finetune_flags] + ([] if sketch else ["--no-sketch"]) \
            + ([] if color else ["--no-color"])
        code = cli.main(flags)
        if code != 0:
            raise MiniworldError(f"fine-tuning {variant} in {out} failed (exit {code})")
        finals[variant] = sorted(out.glob("network-*.safetensors"))[-1]
    return finals


# ------------------------------------------------------------------------------ export

def _fp16_copy(net: torch.nn.Module) -> torch.nn.Module:
    """The network with its floating-point parameters rounded to fp16 and back (what the
    exported file stores); buffers such as w_avg too."""
    copy = type(net)(**net.init_kwargs)
    copy.load_state_dict({k: v.half().float() if v.is_floating_point() else v
                          for k, v in net.state_dict().items()})
    return copy.eval()


def fp16_error(G: torch.nn.Module, count: int = 16) -> float:
    """Max |G(z) - G_fp16(z)| over ``count`` fixed latents (images in [-1, 1])."""
    z = torch.randn(count, G.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return float((G(z, noise_mode="const") - _fp16_copy(G)(z, noise_mode="const"))
                     .abs().max())


def export(plan: BuildPlan, name: str, nets: dict, provenance: dict) -> Path:
    """Write ``name``.safetensors (fp16 parameters) and ``name``.provenance.json."""
    folder = Path(plan.export_dir)
    folder.mkdir(parents=True, exist_ok=True)
    error = fp16_error(nets["G_ema"])
    halves = {k: _fp16_copy(v).half() for k, v in nets.items()}  # loaded back as fp32
    path = folder / f"{name}.safetensors"
    save_network(path, halves, {"label": name, "miniworld": True, "fp16_max_abs_error": error})
    write_json_atomic(folder / f"{name}.provenance.json", {
        "label": name, "sha256": sha256_file(path), "bytes": os.path.getsize(path),
        "fp16_max_abs_error": error, **provenance})
    return Path(path)


def export_variant(plan: BuildPlan, variant: str, final: Path, base: dict) -> Path:
    """Export the last network of one fine-tuning run as ``stylegan2-miniworld-R<res>[-variant]``."""
    log = [json.loads(line) for line in (final.parent / "log.jsonl").read_text().splitlines()
           if line.strip()]
    name = rendering_name(plan.resolution, variant)
    return export(plan, name, {"G_ema": load_network(final)["G_ema"]}, {
        **base, "network": f"G_rendering_mini ({variant})",
        "trained_on": "R-style renders, finetune set (seed 1), unpaired",
        "finetune_flags": plan.finetune_flags, "variant": variant,
        "sketch": VARIANTS[variant][0], "color": VARIANTS[variant][1],
        "kimg": log[-1].get("kimg") if log else None,
        "train_seconds": log[-1].get("time") if log else None,
        "log": [{k: row.get(k) for k in ("kimg", "losses", "p", "time")} for row in log],
        "source": real_name(plan.resolution)})


def build(plan: BuildPlan, progress: bool = True) -> dict[str, Path]:
    """All steps; returns the exported network files by label."""
    started = time.time()
    timings = {}
    t = time.time()
    render_sets(plan)
    timings["render_and_align_s"] = round(time.time() - t, 1)
    t = time.time()
    trainer = train_real(plan, progress)
    timings["g_real_s_this_call"] = round(time.time() - t, 1)
    command = "drfhq miniworld train " + f"--out {plan.out}"
    base = {"command": command, "plan": plan.as_dict(), "torch": torch.__version__}
    exported = {real_name(plan.resolution): export(plan, real_name(plan.resolution), {
        "G_ema": trainer.G_ema, "D": trainer.D}, {
        **base, "network": "G_real_mini", "trained_on": "P-style renders, train set (seed 0)",
        "kimg": trainer.kimg, "train_seconds": round(trainer.seconds, 1), "log": trainer.log})}
    t = time.time()
    for variant, final in finetune_variants(plan).items():
        name = rendering_name(plan.resolution, variant)
        exported[name] = export_variant(plan, variant, final, base)
    timings["finetune_s_this_call"] = round(time.time() - t, 1)
    timings["total_s_this_call"] = round(time.time() - started, 1)
    write_json_atomic(plan.folder("timings.json"), timings)
    return exported
