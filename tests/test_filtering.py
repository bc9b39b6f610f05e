"""The filtering grid works without a browser: clicking its buttons writes the rejects file."""

import io

import numpy as np
import pytest
from PIL import Image

from drfhq_lib.data.dataset import apply_rejects, read_rejects, write_rejects
from drfhq_lib.apps.filter_grid import RejectGrid
from drfhq_lib.data.filtering import thumbnail_png

pytest.importorskip("ipywidgets")


@pytest.fixture
def folder(tmp_path):
    folder = tmp_path / "aligned"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        array = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
        Image.fromarray(array).save(folder / f"img{i}.png")
    (folder / "broken.png").write_text("not an image")  # shown as a grey tile
    return folder


def test_clicking_rejects_and_unrejects(folder, tmp_path):
    rejects = tmp_path / "rejects.txt"
    grid = RejectGrid(folder, rejects, page_size=4, columns=2, thumb_size=32)
    assert grid.pages == 2 and len(grid.buttons) == 4
    assert grid.prev_button.disabled and not grid.next_button.disabled
    assert grid.buttons[0].description == "Reject broken.png"

    grid.buttons[1].click()  # img0.png
    assert read_rejects(rejects) == {"img0.png"}
    assert grid.buttons[1].description == "Unreject img0.png"
    assert grid.buttons[1].button_style == "danger"
    grid.buttons[2].click()
    grid.buttons[1].click()  # changed my mind
    assert rejects.read_text() == "img1.png\n"

    grid.next_button.click()
    assert grid.page == 1 and len(grid.buttons) == 2 and grid.next_button.disabled
    grid.buttons[-1].click()  # img4.png
    assert read_rejects(rejects) == {"img1.png", "img4.png"}
    assert "2 rejected" in grid.status.value and "page 2/2" in grid.status.value
    grid.prev_button.click()
    assert grid.page == 0 and grid.buttons[2].description == "Unreject img1.png"

    kept = apply_rejects(folder, rejects).kept
    assert [p.name for p in kept] == ["broken.png", "img0.png", "img2.png", "img3.png"]


def test_grid_starts_from_an_existing_rejects_file(folder, tmp_path):
    rejects = write_rejects(tmp_path / "r.txt", ["img2.png"])
    grid = RejectGrid(sorted(folder.glob("img*.png")), rejects, page_size=10)
    styles = {b.description: b.button_style for b in grid.buttons}
    assert styles["Unreject img2.png"] == "danger" and styles["Reject img0.png"] == ""


def test_thumbnails_are_small_pngs(folder):
    data = thumbnail_png(folder / "img0.png", 16)
    assert Image.open(io.BytesIO(data)).size == (16, 16)
    assert Image.open(io.BytesIO(thumbnail_png(folder / "broken.png", 16))).size == (16, 16)
