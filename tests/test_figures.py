import numpy as np
import torch
from PIL import Image

from drfhq_lib.eval.figures import as_array, image_grid, save_figure


def test_cells_of_every_kind_become_the_same_pixels():
    t = torch.tensor([-1.0, 0.0, 1.0]).reshape(3, 1, 1).expand(3, 2, 2)
    a = as_array(t)
    assert a.shape == (2, 2, 3) and a.dtype == np.uint8
    assert a[0, 0].tolist() == [0, 128, 255]
    assert (as_array(Image.fromarray(a)) == a).all()
    assert as_array(None) is None


def test_grid_with_a_missing_cell_is_written(tmp_path):
    rows = [[torch.zeros(3, 8, 8), None], [torch.ones(3, 8, 8), torch.ones(3, 8, 8)]]
    fig = image_grid(rows, ("a", "b"), ("x", "y"), title="t", warning="UNTRAINED",
                     missing=[["", "no checkpoint"], ["", ""]])
    texts = [t.get_text() for ax in fig.axes for t in ax.texts] + [t.get_text() for t in fig.texts]
    assert "not run\nno checkpoint" in texts and "UNTRAINED" in texts
    path = save_figure(fig, tmp_path / "g.png")
    assert Image.open(path).size[0] > 100 and not list(tmp_path.glob("*.tmp*"))
