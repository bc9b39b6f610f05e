"""Small stand-ins for tests, CI notebooks and benchmarks: an untrained tiny StyleGAN2 source
network and a tiny dataset zip. Anything trained from them is not a result; the source file
says so in its metadata (``untrained``), and figures made from it must say so too."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from drfhq_lib.data.dataset import archive_name
from drfhq_lib.files import atomic_path
from drfhq_lib.data.images import load_image
from drfhq_lib.nets import Discriminator, Generator, save_network
from drfhq_lib.finetune.trainer import UNTRAINED_LABEL


def tiny_networks(resolution: int = 32, channels: int = 32, z_dim: int = 32,
                  mapping_layers: int = 2, seed: int = 0, with_D: bool = True) -> dict:
    """Randomly initialised G, G_ema (= G) and D with at most ``channels`` feature maps."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        G = Generator(z_dim=z_dim, w_dim=z_dim, img_resolution=resolution,
                      mapping_kwargs={"num_layers": mapping_layers},
                      synthesis_kwargs={"channel_base": channels * resolution,
                                        "channel_max": channels})
        nets = {"G": G, "G_ema": Generator(**G.init_kwargs)}
        nets["G_ema"].load_state_dict(G.state_dict())
        if with_D:
            nets["D"] = Discriminator(img_resolution=resolution, channel_base=channels * resolution,
                                      channel_max=channels)
    return nets


def make_tiny_source(path: str | Path, resolution: int = 32, channels: int = 32, seed: int = 0,
                     with_D: bool = True, **kwargs) -> Path:
    """Write an untrained tiny source network file (G, G_ema, D) readable by load_network."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nets = tiny_networks(resolution, channels, seed=seed, with_D=with_D, **kwargs)
    save_network(path, nets, {"untrained": True, "label": UNTRAINED_LABEL})
    return path


def _synthetic_face(rng: np.random.Generator, size: int) -> Image.Image:
    """A cartoon face: coloured background, skin ellipse, eyes, mouth (random shapes/colours)."""
    big = size * 4
    image = Image.new("RGB", (big, big), tuple(int(v) for v in rng.integers(40, 220, 3)))
    draw = ImageDraw.Draw(image)
    skin = tuple(int(v) for v in rng.integers([150, 100, 80], [255, 210, 180]))
    w, h = big * rng.uniform(0.45, 0.6), big * rng.uniform(0.6, 0.75)
    cx, cy = big / 2 + rng.uniform(-0.05, 0.05) * big, big / 2
    draw.ellipse([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], fill=skin)
    eye = big * 0.05
    for dx in (-w / 4, w / 4):
        draw.ellipse([cx + dx - eye, cy - h / 8 - eye, cx + dx + eye, cy - h / 8 + eye],
                     fill=(30, 30, 30))
    draw.arc([cx - w / 5, cy + h / 10, cx + w / 5, cy + h / 4], 20, 160, fill=(120, 30, 30),
             width=max(big // 32, 1))
    return image.resize((size, size), Image.LANCZOS)


def make_tiny_dataset(path: str | Path, resolution: int = 32, count: int = 8,
                      images: list[str | Path] | None = None, seed: int = 0) -> Path:
    """A dataset zip of ``count`` square PNGs at ``resolution``: the given image files
    (centre-cropped, resized, repeated as needed) or synthetic cartoon faces."""
    path = Path(path)
    rng = np.random.default_rng(seed)
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w") as archive:
        for i in range(count):
            if images:
                image = load_image(images[i % len(images)])
                side = min(image.size)
                left, top = (image.width - side) // 2, (image.height - side) // 2
                image = image.crop((left, top, left + side, top + side)).resize(
                    (resolution, resolution), Image.LANCZOS)
            else:
                image = _synthetic_face(rng, resolution)
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            archive.writestr(archive_name(i), buffer.getvalue())
    return path
