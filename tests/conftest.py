import os
from pathlib import Path

import pytest

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
