"""ADA augmentation: the 'bgc' pipeline and the adaptive-p controller (drfhq_lib.data.augment)."""

import math

import pytest
import torch
import torch.nn.functional as F

from drfhq_lib.data.augment import (COLOUR, GEOMETRIC, MAGNITUDES, AdaController, AugmentPipe,
                               ada_adjustment)
from drfhq_lib.errors import DrfhqError
from drfhq_lib.finetune.distributed import all_sum


def noise_images(n=8, size=32, channels=3, seed=0, dtype=torch.float32):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, channels, size, size, generator=generator, dtype=dtype) * 2 - 1


def smooth_images(n=8, size=32, seed=0):
    """Band-limited content: what the sym6 resampling reproduces almost exactly (float64)."""
    coarse = noise_images(n, size // 4, seed=seed, dtype=torch.float64)
    return F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)


def augment(pipe, images, seed=1):
    torch.manual_seed(seed)
    return pipe(images)


def nearest_candidates(output, candidates):
    """Max-abs errors of ``output`` against each candidate, sorted ascending, with the index of
    the best one."""
    errors = [(output - c).abs().max().item() for c in candidates]
    best = min(range(len(errors)), key=errors.__getitem__)
    return best, sorted(errors)


# --- the pipeline ----------------------------------------------------------------------------

def test_bgc_matches_the_official_spec():
    pipe = AugmentPipe.bgc()
    for name in GEOMETRIC + COLOUR:
        assert getattr(pipe, name) == 1.0
    for name, value in MAGNITUDES.items():
        assert getattr(pipe, name) == value
    # the magnitudes are checked by what they do (test_log_normal_magnitudes and
    # test_remaining_magnitudes_by_their_distributions), not against a retyped copy
    assert AugmentPipe("bgc", p=0.3).p.item() == pytest.approx(0.3)
    assert list(pipe.state_dict()) == ["p"]  # the filter is a constant, not checkpoint state


def test_p0_is_the_identity():
    """At p = 0 nothing is drawn, and sym6 up- then down-sampling is the identity (it is an
    orthogonal wavelet filter); what remains is float rounding of the 12-tap filters."""
    pipe = AugmentPipe.bgc(p=0.0)
    images = noise_images()
    assert (augment(pipe, images) - images).abs().max() < 1e-5
    images64 = images.double()
    out64 = augment(pipe, images64)
    assert out64.dtype == torch.float64  # computation follows the input's dtype
    assert (out64 - images64).abs().max() < 1e-7


def test_p1_changes_every_image():
    images = noise_images()
    out = augment(AugmentPipe.bgc(p=1.0), images)
    assert out.shape == images.shape and out.dtype == images.dtype
    assert torch.isfinite(out).all()
    # at p = 1 every image draws a non-identity geometry and colour matrix (brightness and
    # contrast are continuous, so never exactly the identity)
    assert fraction_changed(draw_geometry(p=1.0, scale=1, xfrac=1)) == 1.0
    assert fraction_changed(draw_colour(p=1.0, brightness=1, contrast=1)) == 1.0


def _affine_fit_residual(images, out):
    """Per image, the max residual of the least-squares fit out[:, y, x] = A in[:, y, x] + b,
    and how far (A, b) is from the identity."""
    residuals, moved = [], []
    for x, y in zip(images.double(), out.double()):
        X = torch.cat([x.flatten(1), torch.ones(1, x[0].numel(), dtype=x.dtype)]).T  # [HW, 4]
        Y = y.flatten(1).T
        coef = torch.linalg.lstsq(X, Y).solution  # [4, 3]
        residuals.append((X @ coef - Y).abs().max().item())
        moved.append((coef - torch.eye(4, 3, dtype=x.dtype)).abs().max().item())
    return max(residuals), moved


@pytest.mark.parametrize("name", COLOUR)
def test_each_colour_transform_is_one_affine_colour_map_per_image(name):
    # oracle: a colour transform acts on each pixel's RGB alone, the same way at every pixel
    images = noise_images()
    out = augment(AugmentPipe(p=1.0, **{name: 1}), images)
    residual, moved = _affine_fit_residual(images, out)
    assert residual < 1e-4
    assert max(moved) > 1e-2  # and it is not the identity for every image


@pytest.mark.parametrize("name", GEOMETRIC)
def test_each_geometric_transform_moves_pixels_and_never_mixes_channels(name):
    # oracle: a geometric transform is the same spatial map for every channel, so permuting the
    # input channels permutes the output channels; and it is not a colour map (not affine)
    images = smooth_images(n=8)
    out = augment(AugmentPipe(p=1.0, **{name: 1}), images)
    permuted = augment(AugmentPipe(p=1.0, **{name: 1}), images[:, [2, 0, 1]])
    torch.testing.assert_close(permuted, out[:, [2, 0, 1]], rtol=0, atol=1e-9)
    residual, _ = _affine_fit_residual(images, out)
    assert residual > 1e-2


def test_xflip_gives_the_image_or_its_mirror():
    """Unflipped images come back exactly; flipped ones are the mirror up to the ~0.1 px shift of
    the official resampling (see the ramp test), far closer than to the unflipped image."""
    images = smooth_images(n=16)
    out = augment(AugmentPipe(xflip=1, p=1.0), images)
    chosen = []
    for image, result in zip(images, out):
        best, errors = nearest_candidates(result, [image, image.flip(-1)])
        chosen.append(best)
        assert errors[0] < (1e-7 if best == 0 else 0.1) and errors[1] > 0.5
    assert 0 < sum(chosen) < len(chosen)  # both outcomes occur at p = 1


def test_xflip_of_a_ramp_is_its_mirror_shifted_by_a_constant_subpixel():
    """The official pipe flips through the sym6 resampling too; sym6 is not linear-phase, so the
    mirror lands about 0.1 px off, uniformly (checked away from the borders)."""
    ramp = torch.linspace(-1, 1, 64, dtype=torch.float64).expand(1, 3, 64, 64)
    flip = torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64))[None]
    out = AugmentPipe(xflip=1).apply_geometry(ramp, flip)
    shift_px = ((out - ramp.flip(-1)) / (2 / 63))[..., 8:-8]
    assert shift_px.abs().max() < 0.15
    assert shift_px.max() - shift_px.min() < 1e-3


def test_rotate90_gives_exact_quarter_turns():
    """Quarter turns, up to the same sub-pixel shift as x-flips (only the zero turn is exact)."""
    images = smooth_images(n=24)
    out = augment(AugmentPipe(rotate90=1, p=1.0), images)
    turns = set()
    for image, result in zip(images, out):
        turned = [torch.rot90(image, k, dims=(1, 2)) for k in range(4)]
        best, errors = nearest_candidates(result, turned)
        turns.add(best)
        assert errors[0] < (1e-7 if best == 0 else 0.1) and errors[1] > 0.5
    assert turns == {0, 1, 2, 3}


def test_geometry_keeps_a_constant_image_constant():
    images = torch.full((8, 3, 32, 32), 0.37)
    out = augment(AugmentPipe("bg", p=1.0), images)
    assert (out - 0.37).abs().max() < 1e-5


def test_brightness_shifts_each_image_uniformly():
    images = noise_images()
    out = augment(AugmentPipe(brightness=1, p=1.0), images)
    shift = out - images
    per_image = shift.mean(dim=(1, 2, 3))
    assert (shift - per_image.view(-1, 1, 1, 1)).abs().max() < 1e-6
    assert per_image.abs().min() > 1e-4 and per_image.std() > 0.05  # std 0.2 in the official pipe


def test_contrast_scales_each_image():
    images = noise_images()
    out = augment(AugmentPipe(contrast=1, p=1.0), images)
    ratio = out / images
    assert (ratio - ratio.mean(dim=(1, 2, 3), keepdim=True)).abs().max() < 1e-4


def test_lumaflip_negates_luma_and_keeps_chroma():
    images = noise_images(n=16)
    out = augment(AugmentPipe(lumaflip=1, p=1.0), images)
    luma_in, luma_out = images.mean(dim=1), out.mean(dim=1)
    flipped = (luma_out + luma_in).abs().amax(dim=(1, 2)) < 1e-5
    kept = (out - images).abs().amax(dim=(1, 2, 3)) < 1e-6
    assert (flipped ^ kept).all() and flipped.any() and kept.any()
    chroma_in = images - luma_in[:, None]
    chroma_out = out - luma_out[:, None]
    assert (chroma_out - chroma_in).abs().max() < 1e-5


@pytest.mark.parametrize("name", ["hue", "saturation"])
def test_hue_and_saturation_keep_luma(name):
    images = noise_images()
    out = augment(AugmentPipe(p=1.0, **{name: 1}), images)
    assert out.shape == images.shape and torch.isfinite(out).all()
    assert (out.mean(dim=1) - images.mean(dim=1)).abs().max() < 1e-5
    assert (out - images).abs().max() > 0.1


def test_greyscale_images_are_supported():
    images = noise_images(channels=1)
    out = augment(AugmentPipe.bgc(p=1.0), images)
    assert out.shape == images.shape and torch.isfinite(out).all()


def test_bad_inputs_and_settings_raise():
    with pytest.raises(DrfhqError):
        AugmentPipe.bgc()(torch.zeros(2, 4, 8, 8))
    with pytest.raises(DrfhqError):
        AugmentPipe.bgc()(torch.zeros(3, 8, 8))
    with pytest.raises(DrfhqError):
        AugmentPipe("bgcfnc")
    with pytest.raises(DrfhqError):
        AugmentPipe(flip=1)


def test_output_is_reproducible_under_a_seed():
    pipe = AugmentPipe.bgc(p=0.8)
    images = noise_images(size=16)
    first, again = augment(pipe, images, seed=7), augment(pipe, images, seed=7)
    assert torch.equal(first, again)
    assert not torch.equal(first, augment(pipe, images, seed=8))


def test_gradients_reach_the_images():
    images = noise_images(n=4).requires_grad_()
    augment(AugmentPipe.bgc(p=1.0), images).square().sum().backward()
    assert torch.isfinite(images.grad).all() and images.grad.abs().sum() > 0


def test_r1_double_backward_through_the_pipeline():
    """R1 penalises |d D(augment(x)) / dx|^2 and is minimised w.r.t. D's weights, which needs the
    gradient of a gradient through grid_sample and the FIR convolutions."""
    torch.manual_seed(0)
    disc = torch.nn.Conv2d(3, 4, 3)
    images = noise_images(n=2, size=16).requires_grad_()
    logits = F.softplus(disc(augment(AugmentPipe.bgc(p=1.0), images))).sum()
    (grad,) = torch.autograd.grad(logits, images, create_graph=True)
    penalty = grad.square().sum()
    weight_grad, image_grad = torch.autograd.grad(penalty, [disc.weight, images])
    assert torch.isfinite(weight_grad).all() and weight_grad.abs().sum() > 0
    assert torch.isfinite(image_grad).all() and image_grad.abs().sum() > 0


# --- sampling formulas, checked on the drawn matrices of a large batch ------------------------

LARGE = 20000


def draw_geometry(seed=0, p=1.0, **enabled):
    torch.manual_seed(seed)
    return AugmentPipe(p=p, **enabled).sample_geometry(LARGE, 32, 32)


def draw_colour(seed=0, p=1.0, **enabled):
    torch.manual_seed(seed)
    return AugmentPipe(p=p, **enabled).sample_colour(LARGE, 3)


def fraction_changed(matrices):
    eye = torch.eye(matrices.shape[-1])
    return ((matrices - eye).abs().amax(dim=(1, 2)) > 1e-6).float().mean().item()


def test_each_transform_fires_with_probability_p():
    assert fraction_changed(draw_geometry(p=0.3, xfrac=1)) == pytest.approx(0.3, abs=0.02)
    assert fraction_changed(draw_geometry(p=0.3, scale=1)) == pytest.approx(0.3, abs=0.02)
    assert fraction_changed(draw_colour(p=0.3, brightness=1)) == pytest.approx(0.3, abs=0.02)
    # Half of the flips drawn are "no flip", so an x-flip changes 0.5 * p of the images.
    assert fraction_changed(draw_geometry(p=0.6, xflip=1)) == pytest.approx(0.3, abs=0.02)


def test_two_rotations_fire_together_with_probability_p():
    """Pre- and post-rotation each fire with 1 - sqrt(1 - p), so at least one does with p."""
    assert fraction_changed(draw_geometry(p=0.5, rotate=1)) == pytest.approx(0.5, abs=0.02)


def test_log_normal_magnitudes():
    scale = 1 / draw_geometry(scale=1)[:, 0, 0]  # the matrices are inverse transforms
    assert torch.log2(scale).std().item() == pytest.approx(0.2, rel=0.05)
    contrast = draw_colour(contrast=1)[:, 0, 0]
    assert torch.log2(contrast).std().item() == pytest.approx(0.5, rel=0.05)
    brightness = draw_colour(brightness=1)[:, 0, 3]
    assert brightness.std().item() == pytest.approx(0.2, rel=0.05)


def test_remaining_magnitudes_by_their_distributions():
    aniso = 1 / draw_geometry(aniso=1)[:, 0, 0]  # scale2d(s, 1/s), s = 2^N(0, 0.2)
    assert torch.log2(aniso).std().item() == pytest.approx(0.2, rel=0.05)
    xfrac = draw_geometry(xfrac=1)[:, :2, 2]  # N(0, 0.125) of the size, in pixels at 32 px
    assert xfrac.std().item() == pytest.approx(0.125 * 32, rel=0.05)
    # hue: a rotation about the grey axis by theta ~ U(-pi, pi) (hue_max = 1), so the 3x3 block
    # has trace 1 + 2 cos(theta) with E[cos] = 0 and E[cos^2] = 1/2
    hue = draw_colour(hue=1)[:, :3, :3]
    cos = (hue.diagonal(dim1=1, dim2=2).sum(1) - 1) / 2
    assert cos.mean().item() == pytest.approx(0.0, abs=0.02)
    assert cos.square().mean().item() == pytest.approx(0.5, abs=0.02)
    # saturation: luma + s (I - luma), s = 2^N(0, 1): trace 1 + 2 s
    sat = (draw_colour(saturation=1)[:, :3, :3].diagonal(dim1=1, dim2=2).sum(1) - 1) / 2
    assert torch.log2(sat).std().item() == pytest.approx(1.0, rel=0.05)


def test_integer_translation_is_whole_pixels_within_range():
    shift = draw_geometry(xint=1)[:, :2, 2]
    assert torch.equal(shift, shift.round())
    assert shift.abs().max() == round(0.125 * 32)


# --- adaptive p -------------------------------------------------------------------------------

def run_steps(controller, signs):
    for sign in signs:
        controller.accumulate(torch.full((8, 1), float(sign)))
        controller.step()


def test_ada_adjustment_formula():
    assert ada_adjustment(0.9, 0.6, 64, 4, 100) == 64 * 4 / 100_000
    assert ada_adjustment(0.1, 0.6, 64, 4, 100) == -64 * 4 / 100_000
    assert ada_adjustment(0.6, 0.6, 64, 4, 100) == 0


def test_ada_raises_p_when_d_is_sure_of_the_reals():
    pipe = AugmentPipe.bgc()
    ada = AdaController(pipe, batch_size=8, p=0.2, interval=4, kimg=100)
    run_steps(ada, [1, 1, 1])
    assert ada.p == pytest.approx(0.2) and ada.rt is None  # only at the end of an interval
    run_steps(ada, [1])
    assert ada.rt == 1.0
    assert ada.p == pytest.approx(0.2 + 8 * 4 / 100_000, abs=1e-7)
    assert pipe.p.item() == ada.p  # the pipe sees the new p


def test_ada_lowers_p_but_not_below_zero():
    ada = AdaController(batch_size=8, p=0.5, interval=4, kimg=100)
    run_steps(ada, [1, -1, -1, -1])
    assert ada.rt == -0.5
    assert ada.p == pytest.approx(0.5 - 8 * 4 / 100_000, abs=1e-7)
    low = AdaController(batch_size=8, p=1e-4, interval=4, kimg=100)
    run_steps(low, [-1] * 8)
    assert low.p == 0.0


def test_fixed_and_noaug_modes_keep_p_and_still_report_rt():
    fixed = AdaController(batch_size=8, mode="fixed", p=0.3)
    noaug = AdaController(AugmentPipe.bgc(p=0.7), batch_size=8, mode="noaug", p=0.3)
    for controller, p in [(fixed, 0.3), (noaug, 0.0)]:
        run_steps(controller, [1] * 8)
        assert controller.p == pytest.approx(p) and controller.rt == 1.0


def test_all_reduce_combines_the_statistics_of_all_processes():
    seen = []

    def other_process_saw_negatives(stats):
        seen.append(stats.clone())
        return stats + torch.tensor([-stats[1].item(), stats[1].item()], dtype=stats.dtype)

    ada = AdaController(batch_size=8, p=0.5, interval=2, all_reduce=other_process_saw_negatives)
    run_steps(ada, [1, 1])
    assert seen[0].tolist() == [16.0, 16.0]
    assert ada.rt == 0.0 and ada.p < 0.5
    stats = torch.tensor([3.0, 5.0])
    assert torch.equal(all_sum(stats.clone()), stats)  # single process: identity


def test_state_dict_round_trip_resumes_exactly():
    pattern = [1, 1, -1, 1, 1, 1, -1, 1, 1, 1, 1, -1, 1, 1, 1, 1]
    straight = AdaController(batch_size=8, p=0.1, interval=4, kimg=1)
    run_steps(straight, pattern)

    first = AdaController(batch_size=8, p=0.1, interval=4, kimg=1)
    run_steps(first, pattern[:6])  # stop mid-interval
    resumed = AdaController(AugmentPipe.bgc(), batch_size=8, p=0.9, interval=4, kimg=1)
    resumed.load_state_dict(first.state_dict())
    run_steps(resumed, pattern[6:])
    assert resumed.p == straight.p and resumed.rt == straight.rt
    assert resumed.state_dict() == straight.state_dict()


def test_controller_rejects_bad_configuration():
    with pytest.raises(DrfhqError):
        AdaController(batch_size=8, mode="adaptive")
    with pytest.raises(DrfhqError):
        AdaController(batch_size=0)
    with pytest.raises(DrfhqError):
        AdaController(batch_size=8, mode="fixed").load_state_dict(
            AdaController(batch_size=8).state_dict())
    assert math.isclose(AdaController(batch_size=8, mode="noaug", p=0.5).p, 0.0)
