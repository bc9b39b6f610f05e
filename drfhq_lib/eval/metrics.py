"""Metrics of the paper's tables.

* Tab. 1, FID: torch-fidelity's Inception (``inception-v3-compat``) between N generator samples
  and a dataset folder or zip, with the official weights from the registry (never downloaded;
  the file is re-saved from a weights-only load first, because torch-fidelity opens the path it
  is given with a full unpickler). Offline: ``FD-dlib``, the Fréchet distance of dlib's 128-d
  face descriptors; results carry their metric name and are never called FID.
* Tab. 2, identity similarity: ``identity_table`` over pairs G_real(w) / G_x(w).
* Tab. 3, LPIPS and L2 over image pairs: ``pair_table``. L2 is the mean squared difference of
  the images in [-1, 1] (the library's image range), averaged over pixels and channels.
"""

from __future__ import annotations

import csv
import os
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
from drfhq_lib.errors import DrfhqError
from drfhq_lib.files import atomic_path
from drfhq_lib.nets.identity import DlibEmbedder, FaceEmbedder, IdentityResult, build_embedder, cosine
from drfhq_lib.nets.perceptual import LPIPSVGG16
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


def stylegan_sampler(G: torch.nn.Module, truncation_psi: float = 1.0,
                     noise_mode: str = "const") -> Callable[[torch.Tensor], torch.Tensor]:
    """z -> images [-1, 1] through ``G.mapping`` and ``G.synthesis`` (drfhq_lib.nets)."""
    def sample(z: torch.Tensor) -> torch.Tensor:
        return G.synthesis(G.mapping(z, None, truncation_psi=truncation_psi), noise_mode=noise_mode)
    return sample


class GeneratorSource(GenerativeModelBase):
    """torch-fidelity's generator interface around ``images_from_z`` (z [N, z_dim] -> [-1, 1]):
    ``forward(z)`` returns uint8 NCHW. ``module`` (e.g. G) is registered so ``.cuda()`` moves it.
    """

    def __init__(self, images_from_z: Callable[[torch.Tensor], torch.Tensor], z_dim: int,
                 module: torch.nn.Module | None = None):
        super().__init__()
        self.images_from_z = images_from_z
        self.module = module
        self._z_dim = int(z_dim)

    @classmethod
    def from_stylegan(cls, G: torch.nn.Module, truncation_psi: float = 1.0,
                      noise_mode: str = "const") -> "GeneratorSource":
        return cls(stylegan_sampler(G, truncation_psi, noise_mode), G.z_dim, G)

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
        """``num`` samples in [-1, 1], in batches; z drawn as torch-fidelity draws it."""
        rng = np.random.RandomState(seed)
        for start in range(0, num, batch_size):
            z = torch.from_numpy(rng.randn(min(batch_size, num - start), self.z_size)).float()
            yield to_float(self.forward(z))


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
                       verbose: bool = False) -> float:
    """FID by torch-fidelity between ``num_samples`` samples of ``source`` and ``dataset``."""
    import torch_fidelity

    data = dataset if isinstance(dataset, Dataset) else ImageFiles(dataset)
    with tempfile.TemporaryDirectory(prefix="drfhq-fid-") as tmp:
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
        value = fid_torch_fidelity(source, data, r.path, num_samples, batch_size, device, verbose)
        return DistanceResult("FID", value, num_samples, len(data), resolved=[r])
    embedder = DlibEmbedder(r.path, [r, weights.resolve("dlib-landmarks68")])
    return fd_dlib(source.batches(num_samples, batch_size, seed), data.batches(batch_size),
                   embedder)


# ----------------------------------------------------------------------------- pair tables


@dataclass
class PairResult:
    """Per-pair LPIPS and L2 (Tab. 3), with the LPIPS variant's label."""

    label: str
    lpips: list[float] = field(default_factory=list)
    l2: list[float] = field(default_factory=list)
    resolved: list[Resolved] = field(default_factory=list)

    @property
    def n_pairs(self) -> int:
        return len(self.l2)

    def as_row(self) -> dict:
        return {"lpips": float(np.mean(self.lpips)), "l2": float(np.mean(self.l2)),
                "n_pairs": self.n_pairs, "lpips_variant": self.label}


@torch.no_grad()
def pair_table(pairs: Iterable[tuple[torch.Tensor, torch.Tensor]],
               lpips_net: LPIPSVGG16) -> PairResult:
    """LPIPS and L2 of every pair in a stream of paired batches in [-1, 1]."""
    result = PairResult(lpips_net.label, resolved=list(lpips_net.resolved))
    device = next(lpips_net.parameters()).device
    for a, b in pairs:
        if a.shape != b.shape:
            raise ValueError(f"paired images differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
        a, b = a.to(device), b.to(device)
        result.lpips += lpips_net(a, b).tolist()
        result.l2 += (a - b).square().flatten(1).mean(1).tolist()
    return result


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

