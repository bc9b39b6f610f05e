import torch

from drfhq_lib.infer import composite


def _images(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(2, 3, 32, 32, generator=g) * 2 - 1


def _disc_mask(radius=8, size=32):
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    return ((yy - size / 2) ** 2 + (xx - size / 2) ** 2 <= radius ** 2).float()[None, None]


def test_all_ones_mask_gives_the_result_and_zeros_the_original():
    result, original = _images(0), _images(1)
    ones, zeros = torch.ones(2, 1, 32, 32), torch.zeros(2, 1, 32, 32)
    assert torch.equal(composite.blend(result, original, ones), result)
    assert torch.equal(composite.blend(result, original, zeros), original)


def test_blend_is_the_convex_combination_of_eq5():
    result, original = _images(0), _images(1)
    m = torch.full((2, 1, 32, 32), 0.25)
    torch.testing.assert_close(composite.blend(result, original, m), 0.25 * result + 0.75 * original)


def test_erode_shrinks_by_the_given_pixels():
    square = torch.zeros(1, 1, 32, 32)
    square[..., 8:24, 8:24] = 1
    expected = torch.zeros_like(square)
    expected[..., 11:21, 11:21] = 1  # three pixels off each side
    assert torch.equal(composite.erode(square, 3), expected)
    disc = _disc_mask(8)
    assert torch.all(composite.erode(disc, 2) <= disc)
    assert torch.equal(composite.erode(disc, 0), disc)


def test_feather_keeps_the_inside_and_softens_the_edge():
    mask = _disc_mask(10)
    soft = composite.feather(mask, 1.5)
    assert soft[0, 0, 16, 16] > 0.999 and soft[0, 0, 0, 0] < 1e-6
    edge = soft[0, 0, 16, 26]  # on the disc's edge: neither in nor out
    assert 0.2 < edge < 0.8
    assert abs(soft.sum() - mask.sum()) / mask.sum() < 0.02  # blurring moves mass, keeps it


def test_soften_is_erode_then_feather():
    mask = _disc_mask(10)
    torch.testing.assert_close(composite.soften(mask, 2, 1.0),
                               composite.feather(composite.erode(mask, 2), 1.0))


def test_match_colour_takes_the_originals_statistics_inside_the_mask():
    result = _images(0) * 0.3 + 0.2
    original = _images(1) * 0.5 - 0.1
    mask = _disc_mask(10).expand(2, 1, 32, 32)
    out = composite.match_colour(result, original, mask)
    inside = mask.bool().expand_as(out)
    for c in range(3):
        o = original[:, c][inside[:, c]]
        m = out[:, c][inside[:, c]]
        assert abs(m.mean() - o.mean()) < 0.02
    assert torch.equal(composite.match_colour(result, original, mask, strength=0.0), result)
