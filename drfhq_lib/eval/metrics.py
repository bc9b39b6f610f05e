"""Metrics of the paper's tables.

* Tab. 1, FID: torch-fidelity's Inception (``inception-v3-compat``) between N generator samples
  and a dataset folder or zip, with the official weights from the registry (never downloaded;
  the file is re-saved from a weights-only load first, because torch-fidelity opens the path it
  is given with a full unpickler). Offline: ``FD-dlib``, the Fréchet distance of dlib's 128-d
  face descriptors; results carry their metric name and are never called FID. Samples are
  drawn with **random noise** (``noise_mode="random"``, seeded), as the official StyleGAN2-ADA
  metric does (it calls ``G(z, c)`` with the synthesis default); ``"const"`` is the named
  alternative (:data:`FID_NOISE_MODES`).
* Tab. 2, identity similarity: ``identity_table`` over pairs G_real(w) / G_x(w).
* Tab. 3, LPIPS and L2 over image pairs: ``pair_table``. L2 is the mean squared difference of
  the images in [-1, 1] (the library's image range), averaged over pixels and channels. The
  paper does not say at which size or with which LPIPS trunk, so the pairs are scored under
  named protocols (:data:`PAIR_PROTOCOLS`, the inversion literature's first): ``256-alex``,
  ReStyle's / HyperStyle's scoring (both images resized to 256 px, LPIPS-AlexNet), and
  ``native-vgg``, the images as the generator made them (1024 px for FFHQ) with LPIPS-VGG16.
  ``pair_scorers`` builds one scorer per protocol; a protocol whose LPIPS network is missing
  still gives its L2, and its LPIPS is "not run" with the file it needs.
"""

from __future__ import annotations

import contextlib
import csv
import os
import math
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping

import numpy as np
import torch
from torch.utils.data import Dataset
from torch_fidelity import GenerativeModelBase

from drfhq_lib.nets import weights
from drfhq_lib.errors import DrfhqError, MissingWeightsError
from drfhq_lib.files import atomic_path
from drfhq_lib.nets.identity import DlibEmbedder, FaceEmbedder, IdentityResult, build_embedder, cosine
from drfhq_lib.nets.perceptual import LPIPSVGG16, build_lpips
from drfhq_lib.provenance import write_sidecar
from drfhq_lib.nets.weights import Prefer, Resolved
from drfhq_lib.nets.latents import seed_range, z_from_seeds
from drfhq_lib.data.dataset import open_dataset


# ----------------------------------------------------------------------------- Fréchet distance


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of feature rows."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"need at least 2 feature rows, got shape {features.shape}")
    return features.mean(0), np.cov(features, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray,
                     sigma2: np.ndarray, eps: float = 1e-6) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^1/2) between two Gaussians."""
    from scipy import linalg

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(sigma1 @ sigma2)
    if caught or not np.isfinite(covmean).all():  # singular product: regularise (pytorch-fid)
        offset = np.eye(len(sigma1)) * eps
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", linalg.LinAlgWarning)
            covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    covmean = covmean.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


@dataclass
class DistanceResult:
    """A distribution distance with the name of what it is (``FID`` or ``FD-dlib``)."""

    metric: str
    value: float
    n_a: int
    n_b: int
    n_no_face_a: int = 0
    n_no_face_b: int = 0
    resolved: list[Resolved] = field(default_factory=list)

    def as_row(self) -> dict:
        return {"metric": self.metric, "value": self.value, "n_a": self.n_a, "n_b": self.n_b,
                "n_no_face_a": self.n_no_face_a, "n_no_face_b": self.n_no_face_b}


# ----------------------------------------------------------------------------- image sources


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float NCHW -> uint8 NCHW (StyleGAN2-ADA's rounding), on the same device."""
    return (images * 127.5 + 128).clamp(0, 255).to(torch.uint8)


def to_float(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 127.5 - 1.0


#: Tab. 1's sampling noise: the official metric's first, then the named alternative.
FID_NOISE_MODES = ("random", "const")


def _check_noise_mode(noise_mode: str) -> str:
    if noise_mode not in FID_NOISE_MODES:
        raise ValueError(f"FID samples take noise_mode 'random' (the official metric's) or "
                         f"'const', not {noise_mode!r}")
    return noise_mode


@contextlib.contextmanager
def seeded_noise(seed: int, device: torch.device | str = "cpu"):
    """torch's global generator seeded for the block (where ``noise_mode="random"`` draws),
    and restored afterwards, so random-noise samples repeat from run to run."""
    device = torch.device(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


def stylegan_sampler(G: torch.nn.Module, truncation_psi: float = 1.0,
                     noise_mode: str = "random") -> Callable[[torch.Tensor], torch.Tensor]:
    """z -> images [-1, 1] through ``G.mapping`` and ``G.synthesis`` (drfhq_lib.nets);
    ``noise_mode`` "random" (fresh noise per image, the official metric) or "const"."""
    _check_noise_mode(noise_mode)

    def sample(z: torch.Tensor) -> torch.Tensor:
        return G.synthesis(G.mapping(z, None, truncation_psi=truncation_psi), noise_mode=noise_mode)
    return sample


class GeneratorSource(GenerativeModelBase):
    """torch-fidelity's generator interface around ``images_from_z`` (z [N, z_dim] -> [-1, 1]):
    ``forward(z)`` returns uint8 NCHW. ``module`` (e.g. G) is registered so ``.cuda()`` moves it.
    """

    def __init__(self, images_from_z: Callable[[torch.Tensor], torch.Tensor], z_dim: int,
                 module: torch.nn.Module | None = None, noise_mode: str = ""):
        super().__init__()
        self.images_from_z = images_from_z
        self.module = module
        self._z_dim = int(z_dim)
        self.noise_mode = noise_mode  # "" where images_from_z is not a StyleGAN sampler

    @classmethod
    def from_stylegan(cls, G: torch.nn.Module, truncation_psi: float = 1.0,
                      noise_mode: str = "random") -> "GeneratorSource":
        """Samples as the official metric draws them: ``noise_mode="random"`` by default."""
        return cls(stylegan_sampler(G, truncation_psi, noise_mode), G.z_dim, G, noise_mode)

    @property
    def z_size(self) -> int:
        return self._z_dim

    @property
    def z_type(self) -> str:
        return "normal"

    @property
    def num_classes(self) -> int:
        return 0

    def _device(self) -> torch.device:
        params = list(self.module.parameters()) if self.module is not None else []
        return params[0].device if params else torch.device("cpu")

    @torch.no_grad()
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return to_uint8(self.images_from_z(z.to(self._device())))

    def batches(self, num: int, batch_size: int, seed: int = 2020) -> Iterator[torch.Tensor]:
        """``num`` samples in [-1, 1], in batches; z drawn as torch-fidelity draws it, and any
        random synthesis noise from torch seeded with ``seed`` + the batch's first index."""
        rng = np.random.RandomState(seed)
        for start in range(0, num, batch_size):
            z = torch.from_numpy(rng.randn(min(batch_size, num - start), self.z_size)).float()
            with seeded_noise(seed + start, self._device()):
                images = self.forward(z)
            yield to_float(images)


class ImageFiles(Dataset):
    """A dataset zip or folder as uint8 [3, R, R] for torch-fidelity: the package's one
    dataset reader (``data.dataset.ImageDataset``, through the safe ``load_image``)."""

    def __init__(self, path: str | os.PathLike):
        self.images = open_dataset(path)
        self.path, self.names = self.images.path, self.images.names

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return to_uint8(self.images[i][None])[0]

    def batches(self, batch_size: int, limit: int | None = None) -> Iterator[torch.Tensor]:
        n = len(self) if limit is None else min(limit, len(self))
        for start in range(0, n, batch_size):
            yield torch.stack([self.images[i] for i in range(start, min(start + batch_size, n))])


# ----------------------------------------------------------------------------- FID / FD-dlib


def _sanitized_copy(path: Path, folder: Path) -> Path:
    """A copy of a torch state dict that went through the weights-only loader."""
    copy = folder / path.name
    torch.save(weights.read_torch_state(path), copy)
    return copy


def fid_torch_fidelity(source: GeneratorSource, dataset: str | os.PathLike | Dataset,
                       weights_path: str | os.PathLike, num_samples: int = 50_000,
                       batch_size: int = 32, device: torch.device | str = "cpu",
                       verbose: bool = False, seed: int = 2020) -> float:
    """FID by torch-fidelity between ``num_samples`` samples of ``source`` and ``dataset``
    (torch's generator seeded with ``seed`` for the synthesis noise, then restored)."""
    import torch_fidelity

    data = dataset if isinstance(dataset, Dataset) else ImageFiles(dataset)
    with tempfile.TemporaryDirectory(prefix="drfhq-fid-") as tmp, seeded_noise(seed, device):
        safe = _sanitized_copy(Path(weights_path), Path(tmp))
        out = torch_fidelity.calculate_metrics(
            input1=source, input2=data, fid=True, feature_extractor="inception-v3-compat",
            feature_extractor_weights_path=str(safe), input1_model_num_samples=num_samples,
            batch_size=batch_size, cuda=torch.device(device).type == "cuda", cache=False,
            datasets_download=False, verbose=verbose)
    return float(out[torch_fidelity.KEY_METRIC_FID])


def descriptors(batches: Iterable[torch.Tensor], embedder: FaceEmbedder) -> tuple[np.ndarray, int]:
    """Embeddings of every image with a face, and how many images had none."""
    rows, missing = [], 0
    for images in batches:
        emb, found = embedder.embed(images)
        rows.append(emb[found])
        missing += int((~found).sum())
    return (np.concatenate(rows) if rows else np.zeros((0, embedder.dim))), missing


def fd_dlib(batches_a: Iterable[torch.Tensor], batches_b: Iterable[torch.Tensor],
            embedder: DlibEmbedder | None = None) -> DistanceResult:
    """Fréchet distance of dlib face descriptors between two image streams in [-1, 1]."""
    if embedder is None:
        r = weights.resolve("inception-fid", "substitute")
        embedder = DlibEmbedder(r.path, [r, weights.resolve("dlib-landmarks68")])
    fa, miss_a = descriptors(batches_a, embedder)
    fb, miss_b = descriptors(batches_b, embedder)
    if len(fa) < 2 or len(fb) < 2:
        raise DrfhqError(f"FD-dlib needs at least 2 faces per side; found {len(fa)} and "
                         f"{len(fb)} ({miss_a} and {miss_b} images without a face)")
    value = frechet_distance(*gaussian_stats(fa), *gaussian_stats(fb))
    return DistanceResult("FD-dlib", value, len(fa) + miss_a, len(fb) + miss_b, miss_a, miss_b,
                          embedder.resolved)


def generator_distance(source: GeneratorSource, dataset: str | os.PathLike,
                       num_samples: int = 50_000, batch_size: int = 32,
                       device: torch.device | str = "cpu", prefer: Prefer = "auto",
                       seed: int = 2020, verbose: bool = False) -> DistanceResult:
    """Tab. 1: FID (official Inception) or FD-dlib (offline) of a generator against a dataset."""
    r = weights.resolve("inception-fid", prefer)
    data = ImageFiles(dataset)
    if r.is_official:
        value = fid_torch_fidelity(source, data, r.path, num_samples, batch_size, device, verbose,
                                   seed)
        return DistanceResult("FID", value, num_samples, len(data), resolved=[r])
    embedder = DlibEmbedder(r.path, [r, weights.resolve("dlib-landmarks68")])
    return fd_dlib(source.batches(num_samples, batch_size, seed), data.batches(batch_size),
                   embedder)


# ----------------------------------------------------------------------------- pair tables


@dataclass
class PairResult:
    """Per-pair LPIPS and L2 (Tab. 3), with the LPIPS variant's label (``lpips`` stays empty
    where no LPIPS network was given)."""

    label: str
    lpips: list[float] = field(default_factory=list)
    l2: list[float] = field(default_factory=list)
    resolved: list[Resolved] = field(default_factory=list)
    size: int | None = None  # the side the pairs were scored at

    @property
    def n_pairs(self) -> int:
        return len(self.l2)

    def as_row(self) -> dict:
        return {"lpips": float(np.mean(self.lpips)) if self.lpips else math.nan,
                "l2": float(np.mean(self.l2)) if self.l2 else math.nan,
                "n_pairs": self.n_pairs, "lpips_variant": self.label}

    def extend(self, other: "PairResult") -> None:
        self.lpips += other.lpips
        self.l2 += other.l2
        self.size = self.size or other.size


@torch.no_grad()
def pair_table(pairs: Iterable[tuple[torch.Tensor, torch.Tensor]],
               lpips_net: LPIPSVGG16 | None, size: int | None = None,
               label: str = "") -> PairResult:
    """LPIPS and L2 of every pair in a stream of paired batches in [-1, 1]; ``size``: both
    images resized to ``size`` x ``size`` first (:func:`protocol_resize`). Without a network
    (``lpips_net=None``) only L2 is computed."""
    resolved = list(lpips_net.resolved) if lpips_net is not None else []
    label = label or (lpips_net.label if lpips_net is not None else "no LPIPS")
    result = PairResult(label, resolved=resolved, size=size)
    device = next(lpips_net.parameters()).device if lpips_net is not None else None
    for a, b in pairs:
        if a.shape != b.shape:
            raise ValueError(f"paired images differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
        a, b = a.to(device or a.device), b.to(device or b.device)
        if size is not None:
            a, b = protocol_resize(a, size), protocol_resize(b, size)
        result.size = a.shape[-1]
        if lpips_net is not None:
            result.lpips += lpips_net(a, b).tolist()
        result.l2 += (a - b).square().flatten(1).mean(1).tolist()
    return result


# ----------------------------------------------------------------------------- Tab. 3 protocols


@dataclass(frozen=True)
class PairProtocol:
    """How Tab. 3's pairs are scored: the side both images are resized to (None: as given,
    i.e. the generator's resolution) and the LPIPS trunk (``"alex"`` or ``"vgg"``)."""

    name: str
    size: int | None
    lpips: str
    description: str


PAIR_PROTOCOLS: dict[str, PairProtocol] = {p.name: p for p in [
    PairProtocol("256-alex", 256, "alex",
                 "the inversion literature's scoring (ReStyle / HyperStyle "
                 "scripts/calc_losses_on_images.py): both images resized to 256 x 256 "
                 "(bilinear, antialiased, as torchvision's Resize of a PIL image), LPIPS v0.1 "
                 "AlexNet, L2 = MSE of the [-1, 1] images"),
    PairProtocol("native-vgg", None, "vgg",
                 "both images as the generator made them (1024 px for FFHQ), LPIPS v0.1 "
                 "VGG16 (the network of the paper's losses), L2 = MSE of the [-1, 1] images"),
]}
#: Tab. 3's protocols in the order tables list them: the literature's first.
DEFAULT_PAIR_PROTOCOLS = tuple(PAIR_PROTOCOLS)


def get_protocol(name: str | PairProtocol) -> PairProtocol:
    if isinstance(name, PairProtocol):
        return name
    try:
        return PAIR_PROTOCOLS[name]
    except KeyError:
        raise DrfhqError(f"unknown Tab. 3 protocol {name!r}; choose from "
                         f"{', '.join(PAIR_PROTOCOLS)}") from None


def protocol_resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Square resize as the scoring scripts do it (torchvision ``Resize`` of a PIL image, i.e.
    PIL's bilinear filter, antialiased when shrinking)."""
    if images.shape[-2:] == (size, size):
        return images
    return torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear",
                                           align_corners=False, antialias=True)


@dataclass
class PairScorer:
    """One protocol with its LPIPS network, or the reason the network is missing."""

    protocol: PairProtocol
    lpips_net: LPIPSVGG16 | None
    reason: str = ""

    @property
    def label(self) -> str:
        return self.lpips_net.label if self.lpips_net is not None else \
            f"lpips-{self.protocol.lpips} (not run)"

    @property
    def resolved(self) -> list[Resolved]:
        return list(self.lpips_net.resolved) if self.lpips_net is not None else []

    def score(self, pairs: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> PairResult:
        return pair_table(pairs, self.lpips_net, self.protocol.size, self.label)

    def row(self, result: PairResult) -> dict:
        """Tab. 3's columns for ``result`` (scored by :meth:`score`): protocol first."""
        return {"protocol": self.protocol.name,
                "size_px": result.size if result.size is not None else "",
                **result.as_row(), "lpips_note": self.reason}


def pair_scorer(protocol: str | PairProtocol, prefer: Prefer = "auto",
                device: torch.device | str = "cpu",
                lpips_net: LPIPSVGG16 | None = None) -> PairScorer:
    """The scorer of ``protocol``: its LPIPS network from the registry (or ``lpips_net``, an
    already built one of the same trunk); a missing network file makes its LPIPS "not run"
    with the registry's message naming the file."""
    protocol = get_protocol(protocol)
    if lpips_net is not None:
        return PairScorer(protocol, lpips_net)
    try:
        return PairScorer(protocol, build_lpips(prefer, device, net=protocol.lpips))
    except MissingWeightsError as err:
        return PairScorer(protocol, None, f"LPIPS not run: {err}")


def pair_scorers(protocols: Iterable[str | PairProtocol] = DEFAULT_PAIR_PROTOCOLS,
                 prefer: Prefer = "auto", device: torch.device | str = "cpu",
                 built: Mapping[str, LPIPSVGG16] | None = None) -> list[PairScorer]:
    """One scorer per protocol; ``built``: trunk name ("vgg", "alex") -> a network to reuse."""
    built = built or {}
    return [pair_scorer(p, prefer, device, built.get(get_protocol(p).lpips))
            for p in protocols]


def as_scorer(scorer: PairScorer | LPIPSVGG16) -> PairScorer:
    """A scorer as given, or a plain LPIPS network as the protocol 'as-given' (no resize)."""
    if isinstance(scorer, PairScorer):
        return scorer
    trunk = getattr(scorer, "trunk_name", "vgg")
    return PairScorer(PairProtocol("as-given", None, trunk,
                                   "the images as given, with the LPIPS network passed in"),
                      scorer)


def paired_samples(G_a: torch.nn.Module, G_b: torch.nn.Module, num: int, batch_size: int,
                   seed: int = 0, device: torch.device | str = "cpu", truncation_psi: float = 1.0,
                   noise_mode: str = "const") -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Pairs (G_a(w), G_b(w)) for the same w: w from G_a's mapping (the fine-tuned generator
    keeps G_real's frozen mapping network), each synthesis network renders it."""
    for start in range(0, num, batch_size):
        z = z_from_seeds(seed_range(seed + start, min(batch_size, num - start)), G_a.z_dim, device)
        with torch.no_grad():
            ws = G_a.mapping(z, None, truncation_psi=truncation_psi)
            yield G_a.synthesis(ws, noise_mode=noise_mode), G_b.synthesis(ws, noise_mode=noise_mode)


def identity_over(pairs: Iterable[tuple[torch.Tensor, torch.Tensor]],
                  embedder: FaceEmbedder) -> IdentityResult:
    """Identity similarity over a stream of paired batches."""
    result = IdentityResult(embedder.label, [], embedder.resolved)
    for a, b in pairs:
        result.values += [float(v) for v in cosine(embedder.embed(a)[0], embedder.embed(b)[0])]
    return result


def identity_table(methods: Mapping[str, Iterable[tuple[torch.Tensor, torch.Tensor]]],
                   embedder: FaceEmbedder | None = None, prefer: Prefer = "auto",
                   device: torch.device | str = "cpu") -> list[dict]:
    """Tab. 2: one row per method (name -> its stream of (G_real(w), G_method(w)) pairs)."""
    embedder = embedder or build_embedder(prefer, device)
    return [{"method": name, **identity_over(pairs, embedder).as_row()}
            for name, pairs in methods.items()]


def write_table(rows: list[dict], path: str | os.PathLike, networks: Iterable[Resolved] = (),
                params: Mapping | None = None) -> Path:
    """Write rows as CSV (atomically) with its provenance sidecar."""
    path = Path(path)
    if not rows:
        raise ValueError(f"{path}: no rows to write")
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    write_sidecar(path, networks, params)
    return path

