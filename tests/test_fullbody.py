"""Fig. 5 / Fig. 16 (drfhq_lib.eval.fullbody): full-body renders before and after the paste-back,
with their masks, through the library's enhance pipeline on the mini world's networks."""

import pytest
import torch
from PIL import Image

from drfhq_lib.eval import fullbody
from drfhq_lib.infer import enhance
from drfhq_lib.infer.projection import ProjectionParams


def test_face_box_is_a_square_around_the_mask_inside_the_image():
    mask = torch.zeros(1, 1, 60, 40)
    mask[0, 0, 10:20, 12:18] = 1  # 6 wide, 10 high, centre (15, 15)
    # side = 10 * (1 + 2 * 0.5) = 20, centred on (15, 15): x 5..25, y 5..25
    assert fullbody.face_box(mask) == (5, 5, 25, 25)
    corner = torch.zeros(1, 1, 60, 40)
    corner[0, 0, 0:4, 36:40] = 1  # at the top-right corner: the box is moved inside
    assert fullbody.face_box(corner) == (24, 0, 40, 16)  # min_side 16
    assert fullbody.face_box(torch.zeros(1, 1, 8, 8)) is None


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("fullbody")
    blank = out.parent / "blank_body.png"
    Image.new("RGB", (128, 192), (90, 90, 90)).save(blank)  # no face to find
    nets = enhance.load_generators("miniworld", "miniworld", "cpu")
    body = enhance.SAMPLES / "ava_body.png"
    params = ProjectionParams(steps=2, w_avg_samples=500)
    return fullbody.fullbody_run([body, blank], out, nets, params, batch=1, prefer="substitute",
                                 progress=False), body, blank, nets


@pytest.mark.slow  # enhances a 512 x 768 render (two dlib alignments, LPIPS)
def test_each_render_has_before_masks_and_after_in_its_own_coordinates(run):
    result, body, _, nets = run
    row, cells = result.rows[0], result.panels[0]
    assert row["status"] == "ok" and row["trained"] == "true" and result.trained
    before, mask, soft, after, face_before, face_after = cells
    w, h = Image.open(body).size
    assert before.shape == after.shape == (3, h, w) and soft.shape == (3, h, w)
    assert (row["width"], row["height"]) == (w, h)
    # Eq. 5 as an oracle: where the soft mask is 0 the composite is the render itself ...
    outside = soft[0] == -1
    assert outside.any() and torch.equal(after[:, outside], before[:, outside])
    # ... and inside it the face was replaced
    assert (after - before).abs()[:, soft[0] > 0.9].mean() > 0.01
    assert float(row["pixels_mask_soft"]) > 0 and float(row["max_change_outside"]) == 0
    x0, y0, x1, y1 = map(int, row["face_box"].split())
    assert torch.equal(face_before, before[:, y0:y1, x0:x1])
    assert torch.equal(face_after, after[:, y0:y1, x0:x1])
    assert mask[:, y0:y1, x0:x1].max() == 1 and mask.max() == 1  # the face lies in its box
    assert float(row["final_lpips"]) > 0


@pytest.mark.slow  # enhances a 512 x 768 render (two dlib alignments, LPIPS)
def test_a_render_without_a_face_is_a_failed_row_with_its_reason(run):
    result, _, blank, _ = run
    row = result.rows[1]
    assert row["input"] == str(blank) and row["status"] == "failed" and row["reason"]
    assert result.panels[1] == [None] * len(fullbody.COLUMNS)
    assert result.missing[1][0]  # the figure cell says why
    table = fullbody.fullbody_table(result)
    assert [list(r) for r in table][0] == list(table[1])  # every row has every column


@pytest.mark.slow  # enhances a 512 x 768 render (two dlib alignments, LPIPS)
def test_the_figure_says_mini_world_and_shows_not_run_cells(run):
    result, _, _, nets = run
    fig = fullbody.fullbody_figure(result, nets)
    texts = [t.get_text() for t in fig.texts] + [t.get_text() for ax in fig.axes
                                                 for t in ax.texts]
    assert any("mini world (CG→CG), not the paper's FFHQ networks" in t for t in texts)
    assert sum(t.startswith("not run") for t in texts) == len(fullbody.COLUMNS)
    assert not any("UNTRAINED" in t for t in texts)
    with pytest.raises(fullbody.DrfhqError, match="full-body"):
        fullbody.fullbody_run([], "unused", nets)
