"""The training loop: G_real -> G_rendering with StyleGAN2-ADA and the identity constraints.

Networks (Sec. 3.2, Fig. 3):

* ``G_real`` -- the source file's G_ema, frozen (eval mode, no gradients) for the whole run;
* ``G`` (G_rendering) and ``G_ema`` (G_rendering_ema) -- the source file's G and G_ema; ``D``
  -- its D, or a new one of the same resolution when the file has none (said on the console);
* frozen in G and G_ema: the mapping network (with ``w_avg``, never updated) and every ToRGB
  layer (``synthesis.b*.torgb.*``). Both are copied from the source G_ema into G at the start,
  so one z gives one w+ in G_real, G and G_ema, and they stay bit-identical to G_real's.

A step runs the official phases in order -- Gmain, Greg (every ``G_reg_interval`` steps), Dmain,
Dreg (every ``D_reg_interval`` steps) -- each with its own latents, then updates G_ema
(``beta = 0.5 ** (batch / (ema_kimg * 1000))``, no ramp-up: the official choice when resuming
from a pretrained network), then the ADA controller. Lazy regularisation uses the official
Adam adjustment: with ``r = interval / (interval + 1)``, lr ``* r`` and betas ``** r``.

Randomness: at the start of every step the global torch RNG is seeded from (seed, step, rank),
and the latents are drawn from a separate generator seeded from (seed, step) and split over the
ranks. So a step's latents, noise, style-mixing cutoffs and augmentations depend only on the
step, never on what ran before, and a resumed run repeats an uninterrupted one exactly.
The RNG states are saved in the state file all the same (and restored), for anything outside
the steps.
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from drfhq_lib.nets import weights
from drfhq_lib.allocator import keep_freed_memory
from drfhq_lib.data.augment import AdaController, AugmentPipe
from drfhq_lib.errors import DrfhqError, MissingWeightsError
from drfhq_lib.files import sha256_file, write_text_atomic
from drfhq_lib.data.images import tensor_to_uint8
from drfhq_lib.nets import Discriminator, Generator, load_extra, load_network
from drfhq_lib.nets.weights import Resolved
from drfhq_lib.finetune import distributed, snapshots
from drfhq_lib.finetune.config import ConfigError, FinetuneConfig
from drfhq_lib.finetune.data import BatchLoader, MirroredDataset
from drfhq_lib.finetune.losses import IdentityLosses
from drfhq_lib.nets.latents import z_from_seeds
from drfhq_lib.finetune.objective import StyleGAN2Objective

LOG_NAME = "log.jsonl"
UNTRAINED_LABEL = "stylegan2-untrained-small"


def is_frozen(name: str) -> bool:
    """Generator parameters and buffers kept fixed: the mapping network and the ToRGB layers."""
    return name.startswith("mapping.") or ".torgb." in name


# First element of every derived seed: what the random numbers are for.
SEED_STEP, SEED_LATENTS = 1, 2


def derived_seed(*parts: int) -> int:
    """A 63-bit seed from integers (numpy's SeedSequence: nearby inputs, unrelated seeds)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0]
               >> np.uint64(1))


# ----------------------------------------------------------------------------- networks

def _rebuilt(net: nn.Module, kwargs: dict) -> nn.Module:
    """``net`` built again from changed init kwargs (settings that hold no parameters), with its
    parameters and buffers copied: what the official code does when it resumes from a pickle
    into networks built from the training configuration."""
    rebuilt = type(net)(**kwargs)
    rebuilt.load_state_dict(net.state_dict())
    return rebuilt.train(net.training).requires_grad_(False)


def with_mixed_precision(net: nn.Module, num_fp16_res: int = 4, conv_clamp: float = 256):
    """The official 'stylegan2' config's fp16 settings: fp16 in the top ``num_fp16_res``
    resolutions, activations clamped to ±``conv_clamp`` (used on CUDA only). A network that
    already has fp16 layers is returned unchanged."""
    kwargs = net.init_kwargs
    target = kwargs["synthesis_kwargs"] if isinstance(net, Generator) else kwargs
    if target.get("num_fp16_res", 0) > 0:
        return net
    target.update(num_fp16_res=num_fp16_res, conv_clamp=conv_clamp)
    return _rebuilt(net, kwargs)


def with_mbstd_group(D: Discriminator, group: int) -> Discriminator:
    """D with the minibatch standard deviation computed over groups of ``group`` images."""
    kwargs = D.init_kwargs
    epilogue = kwargs.setdefault("epilogue_kwargs", {})
    if epilogue.get("mbstd_group_size", 4) == group:
        return D
    epilogue["mbstd_group_size"] = group
    return _rebuilt(D, kwargs)


def build_discriminator_like(G: Generator, mbstd_group: int = 4) -> Discriminator:
    """A new D for G's resolution and channel settings (when the source file has no D)."""
    synthesis = G.init_kwargs["synthesis_kwargs"]
    return Discriminator(c_dim=G.c_dim, img_resolution=G.img_resolution,
                         img_channels=G.img_channels,
                         channel_base=synthesis.get("channel_base", 32768),
                         channel_max=synthesis.get("channel_max", 512),
                         epilogue_kwargs={"mbstd_group_size": mbstd_group})


def copy_frozen_parts(src: Generator, dst: Generator) -> None:
    """Copy the mapping network and ToRGB layers, and every buffer, from ``src`` into ``dst``."""
    src_state = src.state_dict()
    buffers = {name for name, _ in dst.named_buffers()}
    with torch.no_grad():
        for name, tensor in dst.state_dict().items():
            if is_frozen(name) or name in buffers:
                tensor.copy_(src_state[name])


def source_record(path: str | Path) -> Resolved:
    """Provenance of the source network (G_real): the paper's official FFHQ file, the labelled
    untrained stand-in, or a user's own network file."""
    path = Path(path)
    digest = sha256_file(path)
    official = weights.get("stylegan2-ffhq").find()
    if official is not None and sha256_file(official) == digest:
        return Resolved("stylegan2-ffhq", "official", "stylegan2-ffhq", path, digest)
    try:
        extra = load_extra(path)
    except DrfhqError:
        extra = {}
    label = extra.get("label", UNTRAINED_LABEL) if extra.get("untrained") \
        else f"source network {path.name}"
    return Resolved("stylegan2-ffhq", "substitute", label, path, digest)


def source_is_untrained(path: str | Path) -> bool:
    try:
        return bool(load_extra(path).get("untrained"))
    except DrfhqError:
        return False


# ----------------------------------------------------------------------------- preparing a run

def _existing_snapshot(folder: str | Path | None):
    return snapshots.latest_snapshot(folder) if folder and Path(folder).is_dir() else None


def prepare(config: FinetuneConfig | None = None, resume: str | Path | None = None,
            overrides: dict | None = None) -> tuple[FinetuneConfig, "snapshots.Snapshot | None"]:
    """The configuration of a run and the snapshot it continues from (None for a new run).

    ``resume`` names a run folder; without it a run whose ``out`` already holds a snapshot
    continues from there (rerunning the same command resumes). A resumed run keeps the stored
    configuration; ``config`` / ``overrides`` may change only the budget and the running
    settings (:data:`~drfhq_lib.finetune.config.RESUMABLE_OVERRIDES`).
    """
    overrides = {**(config.as_dict() if config is not None else {}), **(overrides or {})}
    if resume is not None:
        found = _existing_snapshot(resume)
        if found is None:
            raise ConfigError(f"{resume}: no complete snapshot to resume from (a network-*."
                              f"safetensors with its state-*.pt)")
        overrides.setdefault("out", str(resume))
    else:
        if not overrides.get("out"):
            raise ConfigError("finetune needs an output folder (--out)")
        found = _existing_snapshot(overrides["out"])
        if found is None:
            return FinetuneConfig.from_dict(overrides).validate(), None
    stored = FinetuneConfig.from_dict(found.state["config"])
    return stored.resumed_with(overrides), found


# ----------------------------------------------------------------------------- the trainer

@dataclass
class Phase:
    name: str
    interval: int
    opt: torch.optim.Optimizer
    params: list[nn.Parameter]


class Trainer:
    """One fine-tuning run; ``run()`` trains to ``config.kimg`` and returns the final network file.

    ``sketch_net`` / ``lpips_net`` / ``embedder`` replace the registry's networks (tests and
    benchmarks pass small ones); ``None`` builds them through :mod:`drfhq_lib.nets.weights` as
    ``config.prefer`` says, only for the terms that are switched on.
    """

    def __init__(self, config: FinetuneConfig | None = None, resume: str | Path | None = None,
                 overrides: dict | None = None, *, sketch_net: nn.Module | None = None,
                 lpips_net: nn.Module | None = None, embedder=None, log=print):
        self.cfg, found = prepare(config, resume, overrides)
        cfg = self.cfg
        self.log = log
        self.ranks, self.device = distributed.setup(cfg.device)
        self.main = self.ranks.main
        if self.device.type == "cpu":
            keep_freed_memory()  # see allocator.py: large activations reused, not page-faulted
        if self.device.type == "cuda":  # the official settings: cuDNN autotuning, no TF32
            torch.backends.cudnn.benchmark = not cfg.deterministic
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        self.out = Path(cfg.out)
        if self.main:
            self.out.mkdir(parents=True, exist_ok=True)
        self._check_batch()

        # Networks, then the data they must match (checked before the loss networks load).
        G_real, G, G_ema, D = self._networks(found)
        self.G_real = G_real.eval().requires_grad_(False).to(self.device)
        self.G = G.train().requires_grad_(False).to(self.device)
        self.G_ema = G_ema.eval().requires_grad_(False).to(self.device)
        self.D = D.train().requires_grad_(False).to(self.device)
        for net in (self.G, self.G_ema, self.D):
            distributed.broadcast_module(net)
        self.dataset = MirroredDataset(cfg.data, cfg.xflip)
        self.dataset.check_resolution(self.G.img_resolution, f"the generator of {cfg.source}")

        # What is trained.
        self.G_params = [p for n, p in self.G.named_parameters() if not is_frozen(n)]
        ema_by_name = dict(self.G_ema.named_parameters())
        self.ema_pairs = [(ema_by_name[n], p) for n, p in self.G.named_parameters()
                          if not is_frozen(n)]
        self.D_params = list(self.D.parameters())
        self.phases = self._phases()

        # Augmentation, objective, identity constraints.
        self.augment = None if cfg.aug == "noaug" else AugmentPipe.bgc(cfg.p).to(self.device)
        self.ada = AdaController(self.augment, batch_size=cfg.batch, mode=cfg.aug, p=cfg.p,
                                 target=cfg.ada_target, interval=cfg.ada_interval,
                                 kimg=cfg.ada_kimg, all_reduce=distributed.all_sum)
        self.identity_terms = self._identity_terms(sketch_net, lpips_net)
        self.objective = StyleGAN2Objective(
            self.G, self.D, self.G_real, self.augment, self.identity_terms,
            r1_gamma=cfg.gamma, pl_weight=cfg.pl_weight, pl_decay=cfg.pl_decay,
            pl_batch_shrink=cfg.pl_batch_shrink, style_mixing=cfg.style_mixing)

        self.loader = BatchLoader(self.dataset, cfg.seed, cfg.batch, self.ranks.rank,
                                  self.ranks.world, cfg.workers)

        # Progress.
        self.step, self.nimg, self.elapsed = 0, 0, 0.0
        self.last_snapshot_nimg = 0
        self.last_network_file: Path | None = found.network_file if found else None
        self._sums: dict[str, torch.Tensor] = {}
        self._counts: dict[str, int] = {}
        self._embedder, self._embedder_error = embedder, None
        self._grid_real: torch.Tensor | None = None
        if found is not None:
            self._restore(found.state)
        self._trim_log(self.nimg)  # rows of snapshots that did not complete

    # ------------------------------------------------------------------------- setup helpers

    def _networks(self, found) -> tuple[Generator, Generator, Generator, Discriminator]:
        """G_real, G, G_ema, D: from the source file for a new run, from the snapshot (and
        G_real from the unchanged source file) for a resumed one."""
        cfg = self.cfg
        self.source_sha256 = sha256_file(cfg.source)
        source = load_network(cfg.source)
        if "G_ema" not in source and "G" not in source:
            raise DrfhqError(f"{cfg.source}: holds no generator (G or G_ema)")
        G_real = source.get("G_ema", source.get("G"))
        if found is not None:
            if found.state.get("source_sha256") not in (None, self.source_sha256):
                raise ConfigError(f"{cfg.source} has changed since this run started (sha256 "
                                  f"{self.source_sha256[:12]}..., the run used "
                                  f"{found.state['source_sha256'][:12]}...); G_real must be "
                                  f"the same network to resume")
            self._say(f"resuming {found.network_file} ({found.nimg} images seen)")
            G, G_ema, D = found.nets["G"], found.nets["G_ema"], found.nets["D"]
        else:
            G = copy.deepcopy(source.get("G", G_real))
            copy_frozen_parts(G_real, G)
            G_ema = copy.deepcopy(G_real)
            D = source.get("D")
            if D is None:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(cfg.seed)
                    D = build_discriminator_like(G_real, cfg.mbstd_group)
                self._say(f"{cfg.source} has no discriminator: training a new D "
                          f"({G_real.img_resolution} px, same channel settings as G)")
            D = with_mbstd_group(D, cfg.mbstd_group)
        if self.device.type == "cuda" and cfg.mixed_precision:
            return tuple(with_mixed_precision(n) for n in (G_real, G, G_ema, D))
        return G_real, G, G_ema, D

    def _say(self, message: str) -> None:
        if self.main and self.log is not None:
            self.log(message)

    def _check_batch(self) -> None:
        cfg, world = self.cfg, self.ranks.world
        if cfg.batch % world:
            raise ConfigError(f"batch {cfg.batch} does not split over {world} processes")
        per_rank = cfg.batch // world
        self.batch_gpu = cfg.batch_gpu or per_rank
        if per_rank % self.batch_gpu:
            raise ConfigError(f"batch_gpu {self.batch_gpu} does not divide the per-process "
                              f"batch {per_rank}")

    def _phases(self) -> list[Phase]:
        """Gmain, Greg, Dmain, Dreg with the lazy-regularisation Adam adjustment."""
        cfg, phases = self.cfg, []
        for name, params, interval in (("G", self.G_params, cfg.G_reg_interval),
                                       ("D", self.D_params, cfg.D_reg_interval)):
            ratio = interval / (interval + 1)
            opt = torch.optim.Adam(params, lr=cfg.lr * ratio,
                                   betas=(float(cfg.betas[0] ** ratio),
                                          float(cfg.betas[1] ** ratio)),
                                   eps=cfg.eps)
            phases += [Phase(name + "main", 1, opt, params),
                       Phase(name + "reg", interval, opt, params)]
        return phases

    def _identity_terms(self, sketch_net, lpips_net) -> IdentityLosses:
        cfg = self.cfg
        if cfg.sketch and sketch_net is None:
            from drfhq_lib.nets.sketch import build_sketch
            sketch_net = build_sketch(cfg.prefer, self.device)
        if cfg.color and lpips_net is None:
            from drfhq_lib.nets.perceptual import build_lpips
            lpips_net = build_lpips(cfg.prefer, self.device)
        return IdentityLosses(
            sketch_net.to(self.device) if cfg.sketch else None,
            lpips_net.to(self.device) if cfg.color else None,
            lambda_sketch=cfg.lambda_sketch, lambda_color=cfg.lambda_color,
            sketch_size=cfg.sketch_size, color_size=cfg.color_size,
            blur_size=cfg.blur_size, blur_sigma=cfg.blur_sigma)

    @property
    def embedder(self):
        """The identity network of the snapshot similarity (built on first use, rank 0)."""
        if self._embedder is None and self._embedder_error is None and self.cfg.identity:
            from drfhq_lib.nets.identity import build_embedder
            try:
                self._embedder = build_embedder(self.cfg.prefer, self.device)
            except (MissingWeightsError, DrfhqError, ImportError) as err:
                self._embedder_error = str(err)
                self._say(f"identity similarity unavailable: {err}")
        return self._embedder

    @property
    def resolved(self) -> list[Resolved]:
        """Every external network this run uses, for provenance."""
        nets = [source_record(self.cfg.source)] + self.identity_terms.resolved
        if self._embedder is not None:
            nets += list(self._embedder.resolved)
        return nets

    # ------------------------------------------------------------------------- state

    def state_dict(self) -> dict:
        return {
            "step": self.step, "nimg": self.nimg, "elapsed": self.elapsed,
            "G_opt": self.phases[0].opt.state_dict(), "D_opt": self.phases[2].opt.state_dict(),
            "pl_mean": self.objective.pl_mean.detach().cpu(),
            "ada": self.ada.state_dict(), "augment_p": self.ada.p,
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
            "config": self.cfg.as_dict(), "source_sha256": self.source_sha256,
            "world": self.ranks.world,
        }

    def _restore(self, state: dict) -> None:
        self.step, self.nimg = int(state["step"]), int(state["nimg"])
        self.elapsed = float(state.get("elapsed", 0.0))
        self.last_snapshot_nimg = self.nimg
        self.phases[0].opt.load_state_dict(state["G_opt"])
        self.phases[2].opt.load_state_dict(state["D_opt"])
        self.objective.pl_mean.copy_(state["pl_mean"].to(self.device))
        self.ada.load_state_dict(state["ada"])
        torch.set_rng_state(state["rng_cpu"])
        if self.device.type == "cuda" and state.get("rng_cuda"):
            try:
                torch.cuda.set_rng_state_all(state["rng_cuda"])
            except RuntimeError:  # another number of GPUs: the per-step seeds matter, not these
                pass

    def _trim_log(self, nimg: int) -> None:
        """Drop log lines of snapshots after the one resumed from (a run killed mid-snapshot)."""
        path = self.out / LOG_NAME
        if not self.main or not path.is_file():
            return
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        kept = [line for line in lines if json.loads(line).get("nimg", 0) <= nimg]
        if len(kept) != len(lines):
            write_text_atomic(path, "".join(line + "\n" for line in kept))

    # ------------------------------------------------------------------------- one step

    def _latents(self) -> torch.Tensor:
        """This rank's latents of the step, [phases, batch_rank, z_dim]: drawn for the global
        batch from (seed, step), so they do not depend on the number of processes."""
        cfg, r = self.cfg, self.ranks
        generator = torch.Generator().manual_seed(derived_seed(SEED_LATENTS, cfg.seed, self.step))
        z = torch.randn([len(self.phases), cfg.batch, self.G.z_dim], generator=generator)
        per_rank = cfg.batch // r.world
        return z[:, r.rank * per_rank:(r.rank + 1) * per_rank].to(self.device)

    def _run_phase(self, phase: Phase, reals: torch.Tensor, z: torch.Tensor) -> None:
        if self.step % phase.interval:
            return
        if phase.name == "Greg" and self.cfg.pl_weight == 0 or \
                phase.name == "Dreg" and self.cfg.gamma == 0:
            return
        phase.opt.zero_grad(set_to_none=True)
        for p in phase.params:
            p.requires_grad_(True)
        for real, z_round in zip(reals.split(self.batch_gpu), z.split(self.batch_gpu)):
            gain = phase.interval
            if phase.name == "Gmain":
                stats = self.objective.gen_main(z_round, gain)
            elif phase.name == "Greg":
                stats = self.objective.gen_reg(z_round, gain)
            elif phase.name == "Dmain":
                stats = self.objective.disc_main(real, z_round, gain)
            else:
                stats = self.objective.disc_reg(real, gain)
            self._accumulate(stats)
        for p in phase.params:
            p.requires_grad_(False)
        distributed.average_gradients(phase.params)
        for p in phase.params:
            if p.grad is not None:
                torch.nan_to_num(p.grad, nan=0, posinf=1e5, neginf=-1e5, out=p.grad)
        phase.opt.step()

    @torch.no_grad()
    def _update_ema(self) -> None:
        beta = 0.5 ** (self.cfg.batch / max(self.cfg.ema_kimg * 1000, 1e-8))
        for p_ema, p in self.ema_pairs:
            p_ema.copy_(p.lerp(p_ema, beta))
        for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
            b_ema.copy_(b)

    def train_step(self) -> None:
        torch.manual_seed(derived_seed(SEED_STEP, self.cfg.seed, self.step, self.ranks.rank))
        reals = self.loader.get(self.step).to(self.device)
        z = self._latents()
        for phase, phase_z in zip(self.phases, z):
            self._run_phase(phase, reals, phase_z)
        self._update_ema()
        signs = self.objective.real_signs
        if signs:
            self.ada.accumulate(torch.cat(signs))
            signs.clear()
        self.nimg += self.cfg.batch
        self.step += 1
        self.ada.step()

    # ------------------------------------------------------------------------- statistics

    def _accumulate(self, stats: dict) -> None:
        for name, value in stats.items():
            value = value.detach().float()
            self._sums[name] = self._sums[name] + value if name in self._sums else value
            self._counts[name] = self._counts.get(name, 0) + 1

    def _collect(self) -> dict[str, float]:
        """Means since the last call, averaged over processes (same keys on every process)."""
        names = sorted(self._sums)
        if not names:
            return {}
        values = torch.stack([self._sums[n] / self._counts[n] for n in names])
        distributed.all_mean(values)
        self._sums, self._counts = {}, {}
        return dict(zip(names, values.tolist()))

    # ------------------------------------------------------------------------- snapshots

    def grid_latents(self) -> torch.Tensor:
        """Seeds 0 .. grid_size - 1 (``nets.latents``): the same faces in every run's grid."""
        return z_from_seeds(range(self.cfg.grid_size), self.G.z_dim)

    @torch.no_grad()
    def render_grid(self) -> tuple[torch.Tensor, torch.Tensor]:
        """G_real and G_rendering_ema images of the fixed latents (const noise), on the CPU."""
        z = self.grid_latents().to(self.device)
        ws = self.G_ema.mapping(z, None)
        if self._grid_real is None:
            self._grid_real = torch.cat([self.G_real.synthesis(w, noise_mode="const").cpu()
                                         for w in ws.split(self.batch_gpu)])
        rendering = torch.cat([self.G_ema.synthesis(w, noise_mode="const").cpu()
                               for w in ws.split(self.batch_gpu)])
        return self._grid_real, rendering

    def _write_grid(self, nimg: int) -> dict | None:
        """Grid PNG (top row G_real, bottom row G_rendering) and its identity similarity."""
        from PIL import Image

        real, rendering = self.render_grid()
        rows = [np.concatenate(list(tensor_to_uint8(x)), axis=1) for x in (real, rendering)]
        path = snapshots.grid_path(self.out, nimg)
        tmp = path.with_name(f".{path.name}.tmp.png")
        Image.fromarray(np.concatenate(rows, axis=0)).save(tmp)
        tmp.replace(path)
        if not self.cfg.identity or self.embedder is None:
            return {"error": self._embedder_error} if self._embedder_error else None
        from drfhq_lib.nets.identity import identity_similarity

        result = identity_similarity(real, rendering, embedder=self.embedder)
        return _finite_or_none({**result.as_row(), "values": result.values})

    def snapshot(self) -> Path | None:
        losses = self._collect()  # every process takes part in the average
        path = None
        if self.main:
            identity = self._write_grid(self.nimg)
            nets = {"G": self.G, "G_ema": self.G_ema, "D": self.D}
            extra = {"drfhq_finetune": {"nimg": self.nimg, "step": self.step,
                                        "config": self.cfg.as_dict()}}
            path, _ = snapshots.save_snapshot(self.out, self.nimg, nets, self.state_dict(),
                                              extra)
            row = {"kimg": self.nimg / 1000, "nimg": self.nimg, "step": self.step,
                   "p": self.ada.p, "rt": self.ada.rt, "losses": losses, "identity": identity,
                   "time": round(self.elapsed, 3),
                   "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
            with open(self.out / LOG_NAME, "a") as f:
                f.write(json.dumps(_finite_or_none(row)) + "\n")
        self.last_snapshot_nimg = self.nimg
        self.last_network_file = snapshots.network_path(self.out, self.nimg)
        distributed.barrier()
        return path

    # ------------------------------------------------------------------------- the run

    def done(self) -> bool:
        return self.nimg >= self.cfg.kimg * 1000

    def run(self) -> Path:
        """Train until ``kimg`` thousand reals were shown to D; returns the last network file."""
        cfg = self.cfg
        total = math.ceil(cfg.kimg * 1000)
        bar = self._progress_bar(total)
        last_postfix = 0.0
        try:
            with _deterministic(cfg.deterministic):
                while not self.done():
                    started = time.perf_counter()
                    self.train_step()
                    self.elapsed += time.perf_counter() - started
                    if bar is not None:
                        bar.update(min(self.nimg, total) - bar.n)
                        if time.perf_counter() - last_postfix > 1.0:
                            bar.set_postfix_str(self._postfix(), refresh=False)
                            last_postfix = time.perf_counter()
                    if self.done() or self.nimg >= self.last_snapshot_nimg + cfg.snap * 1000:
                        self.snapshot()
        finally:
            if bar is not None:
                bar.close()
            self.loader.close()
        if self.last_network_file is None:  # nothing to do and nothing written before
            self.snapshot()
        if self.main:
            self.write_provenance()
        return self.last_network_file

    def _progress_bar(self, total: int):
        if not (self.main and self.cfg.progress):
            return None
        from tqdm.auto import tqdm

        return tqdm(total=total, initial=min(self.nimg, total), unit="img", desc="finetune",
                    dynamic_ncols=True)

    def _postfix(self) -> str:
        parts = [f"kimg {self.nimg / 1000:.3f}", f"p {self.ada.p:.3f}"]
        for name in ("G_adv", "sketch", "color", "D_loss", "pl_penalty", "r1_penalty"):
            if name in self._sums:
                parts.append(f"{name} {float(self._sums[name]) / self._counts[name]:.4g}")
        return " ".join(parts)

    def write_provenance(self) -> Path:
        from drfhq_lib.provenance import write_sidecar

        return write_sidecar(self.last_network_file, self.resolved,
                             {**self.cfg.as_dict(), "nimg": self.nimg, "step": self.step},
                             extra={"log": str(self.out / LOG_NAME)})


def _finite_or_none(value):
    """NaN (no face found) -> None, so the log stays strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    return value


@contextmanager
def _deterministic(enabled: bool):
    if not enabled:
        yield
        return
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)
