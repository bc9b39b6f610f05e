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


INSTALL_HINT = "run `make install` or `drfhq weights install-substitutes`"


def under_ci() -> bool:
    """CI sets CI=true: there a missing substitute is a broken install, not a reason to skip."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def missing_substitute(err: Exception, what: str = "offline substitute weights"):
    """Skip the test, or under CI=true fail it, because ``what`` is not installed."""
    message = f"{what} not installed ({INSTALL_HINT}): {err}"
    if under_ci():
        pytest.fail(f"CI=true: {message}", pytrace=False)
    pytest.skip(message)


def substitute_or_skip(build, what: str = "offline substitute weights"):
    """``build()``; when the substitute weights are missing, skip the test, or fail it under
    CI=true (a CI run must not pass by skipping what it cannot load)."""
    from drfhq_lib.errors import MissingWeightsError

    try:
        return build()
    except MissingWeightsError as err:
        missing_substitute(err, what)


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
