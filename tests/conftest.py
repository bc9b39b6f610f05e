import os
from pathlib import Path

import pytest
import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"

# Tests never use more threads than CI has cores; results must not depend on it.
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture
def empty_weights(tmp_path, monkeypatch):
    """A weights folder and torch hub cache with nothing in them."""
    folder = tmp_path / "weights"
    folder.mkdir()
    monkeypatch.setenv("DRFHQ_WEIGHTS", str(folder))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    return folder


def substitute_or_skip(build):
    """``build()``, or skip the test when the offline substitute weights are not installed."""
    from drfhq_lib.errors import MissingWeightsError

    try:
        return build()
    except MissingWeightsError as err:
        pytest.skip(f"HED weights not installed (run `drfhq weights install-substitutes`): {err}")


@pytest.fixture(scope="session")
def lpips_hed():
    """The registry's LPIPS substitute (VGG16 trunk of HED), built once per test run."""
    from drfhq_lib.nets.perceptual import build_lpips

    return substitute_or_skip(lambda: build_lpips("substitute"))


# ----------------------------------------------------------------------------- tiny loss networks

class TinySketch(nn.Module):
    """Stands in for S: a fixed random convolution and tanh (3 channels, like DFE's sketch)."""

    resolved: list = []

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.requires_grad_(False)

    def forward(self, images):
        return torch.tanh(self.conv(images))


class TinyLPIPS(nn.Module):
    """Stands in for LPIPS: squared feature distance per image, [N]."""

    resolved: list = []

    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.requires_grad_(False)

    def forward(self, x, y):
        return (self.conv(x) - self.conv(y)).square().mean([1, 2, 3])
