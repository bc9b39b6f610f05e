"""L_sketch, L_color (values and gradients into a generator), the noise regularisation and the
noise renormalisation of the projector."""

import math

import pytest
import torch

from conftest import substitute_or_skip
from drfhq_lib.finetune import losses
from drfhq_lib.nets import perceptual
from drfhq_lib.nets import sketch


@pytest.fixture(scope="module")
def nets(lpips_hed):
    return substitute_or_skip(lambda: sketch.build_sketch("substitute")), lpips_hed


def tiny_generator(resolution=32):
    """A small StyleGAN2 generator (drfhq_lib.nets), or a parameter image if that is absent."""
    torch.manual_seed(0)
    try:
        from drfhq_lib.nets import Generator

        G = Generator(z_dim=32, w_dim=32, img_resolution=resolution, channel_base=256,
                      channel_max=32)
        ws = G.mapping(torch.randn(2, 32), None).detach()
        return G, lambda: G.synthesis(ws, noise_mode="const")
    except ImportError:
        image = torch.nn.Parameter(torch.randn(2, 3, resolution, resolution) * 0.5)
        holder = torch.nn.Module()
        holder.image = image
        return holder, lambda: torch.tanh(image)


def assert_gradients_reach(G):
    grads = [p.grad for p in G.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    assert all(torch.isfinite(g).all() for g in grads if g is not None)


@pytest.fixture
def pair():
    torch.manual_seed(1)
    real = torch.rand(2, 3, 32, 32) * 2 - 1
    return real, real.flip(-1)


# ----------------------------------------------------------------------------- L_sketch, L_color


def test_losses_of_identical_images_are_zero(nets, pair):
    sketch_net, lpips_net = nets
    real, _ = pair
    with torch.no_grad():
        assert losses.sketch_loss(sketch_net, real, real, size=64).item() == 0
        assert losses.color_loss(lpips_net, real, real, size=64).item() == 0


def test_sketch_loss_is_a_per_image_sum_averaged_over_the_batch(nets, pair):
    sketch_net, _ = nets
    real, other = pair
    with torch.no_grad():
        total = losses.sketch_loss(sketch_net, real, other, size=64)
        mean = losses.sketch_loss(sketch_net, real, other, size=64, reduction="mean")
        first = losses.sketch_loss(sketch_net, real[:1], other[:1], size=64)
        second = losses.sketch_loss(sketch_net, real[1:], other[1:], size=64)
    assert total.item() == pytest.approx(mean.item() * 3 * 64 * 64, rel=1e-4)
    assert total.item() == pytest.approx((first + second).item() / 2, rel=1e-4)
    assert total > 0


def test_color_loss_is_blurred_lpips_at_256(nets):
    _, lpips_net = nets
    torch.manual_seed(2)
    a, b = torch.rand(1, 3, 512, 512) * 2 - 1, torch.rand(1, 3, 512, 512) * 2 - 1
    with torch.no_grad():
        from_512 = losses.color_loss(lpips_net, a, b)
        small = [torch.nn.functional.avg_pool2d(t, 2) for t in (a, b)]  # area resize to 256
        direct = lpips_net(*(perceptual.gaussian_blur(t, 13, 10.0) for t in small))
    assert from_512.item() == pytest.approx(direct.item(), rel=1e-5)


def test_gradients_reach_the_generator_through_l_color(nets):
    _, lpips_net = nets
    G, render = tiny_generator()
    target = torch.rand(2, 3, 32, 32) * 2 - 1
    losses.color_loss(lpips_net, target, render(), size=64).backward()
    assert_gradients_reach(G)


def test_gradients_reach_the_generator_through_l_sketch(nets):
    sketch_net, _ = nets
    G, render = tiny_generator()
    target = torch.rand(2, 3, 32, 32) * 2 - 1
    losses.sketch_loss(sketch_net, target, render(), size=64).backward()
    assert_gradients_reach(G)


def test_gradients_reach_the_generator_through_lpips(nets):
    _, lpips_net = nets
    G, render = tiny_generator()
    lpips_net(torch.rand(2, 3, 32, 32) * 2 - 1, render()).sum().backward()
    assert_gradients_reach(G)


def test_identity_losses_weigh_the_two_terms(nets, pair):
    sketch_net, lpips_net = nets
    real, other = pair
    assert (losses.LAMBDA_SKETCH, losses.LAMBDA_COLOR, losses.SKETCH_SIZE, losses.COLOR_SIZE) == (
        5e-6, 3.75e3, 512, 256)
    module = losses.IdentityLosses(sketch_net, lpips_net, sketch_size=64, color_size=64)
    assert (module.lambda_sketch, module.lambda_color) == (5e-6, 3.75e3)
    assert {r.label for r in module.resolved} >= {"sketch[hed]", "lpips-vgg16[hed-trunk]"}
    with torch.no_grad():
        total, terms = module(real, other)
        # oracle by hand: the L1 sum of the sketches at 64 px, LPIPS of blurred 64 px copies
        up = lambda x: perceptual.resize(x, 64)
        l_sketch = (sketch_net(up(real)) - sketch_net(up(other))).abs().flatten(1).sum(1).mean()
        blur = lambda x: perceptual.gaussian_blur(up(x), 13, 10.0)
        l_color = lpips_net(blur(real), blur(other)).mean()
    assert terms["sketch"].item() == pytest.approx(l_sketch.item(), rel=1e-5)
    assert terms["color"].item() == pytest.approx(l_color.item(), rel=1e-5)
    assert total.item() == pytest.approx(5e-6 * l_sketch.item() + 3.75e3 * l_color.item(),
                                         rel=1e-5)


def test_identity_losses_switch_a_term_off_without_its_network_and_average_per_image():
    sketch_net = torch.nn.Tanh()
    a = torch.zeros(2, 3, 8, 8)
    b = torch.stack([torch.zeros(3, 8, 8), torch.full((3, 8, 8), 0.5)])
    module = losses.IdentityLosses(sketch_net, None, lambda_sketch=2.0, sketch_size=8)
    per_image, terms = module.per_image(a, b)
    assert set(terms) == {"sketch"} and module.enabled
    d = math.tanh(0.5) * 3 * 8 * 8  # |tanh(0) - tanh(0.5)| summed over 192 elements
    torch.testing.assert_close(per_image, torch.tensor([0.0, 2.0 * d]))
    total, mean_terms = module(a, b)
    assert total.item() == pytest.approx(d) and mean_terms["sketch"].item() == pytest.approx(d / 2)
    assert not losses.IdentityLosses().enabled


# ----------------------------------------------------------------------------- noise


def test_noise_regularization_closed_forms():
    ones = torch.ones(16, 16)  # autocorrelation 1 at every level (16 and 8): 2 terms each
    assert losses.noise_regularization([ones]).item() == pytest.approx(4.0)
    checker = (torch.arange(16)[:, None] + torch.arange(16)[None, :]) % 2 * 2.0 - 1
    # lag-1 products are all -1 at 16 px; the pooled 8 px map is zero
    assert losses.noise_regularization([checker]).item() == pytest.approx(2.0)
    assert losses.noise_regularization([torch.ones(4, 4)]).item() == pytest.approx(2.0)
    assert losses.noise_regularization([ones, checker[None, None]]).item() == pytest.approx(6.0)


def test_noise_regularization_penalises_correlated_noise_and_has_gradients():
    torch.manual_seed(0)
    maps = [torch.randn(1, 1, r, r, requires_grad=True) for r in (32, 64)]
    loss = losses.noise_regularization(maps)
    loss.backward()
    smooth = [perceptual.gaussian_blur(m.detach().expand(1, 1, -1, -1), 5, 2.0) for m in maps]
    smooth = [s / s.std() for s in smooth]
    assert 0 < loss.item() < 0.05 < losses.noise_regularization(smooth).item()
    assert all(m.grad is not None and torch.isfinite(m.grad).all() for m in maps)


def test_normalize_noise_in_place():
    torch.manual_seed(0)
    maps = [(torch.randn(8, 8) * 3 + 2).requires_grad_(), torch.randn(1, 1, 16, 16) * 0.1 - 1]
    ids = [id(m) for m in maps]
    losses.normalize_noise_(maps)
    for m, i in zip(maps, ids):
        assert id(m) == i
        assert abs(m.mean().item()) < 1e-6
        assert math.isclose(m.detach().square().mean().item(), 1.0, rel_tol=1e-5)


def test_noise_terms_of_a_batch_are_those_of_each_image():
    torch.manual_seed(1)
    maps = [torch.randn(3, 1, r, r) * s + 1 for r, s in ((8, 1.0), (32, 2.0))]
    batch = losses.noise_regularization(maps)
    single = torch.cat([losses.noise_regularization([m[i:i + 1] for m in maps]) for i in range(3)])
    assert batch.shape == (3,) and torch.allclose(batch, single, rtol=1e-6)
    copies = [m.clone() for m in maps]
    losses.normalize_noise_(copies)
    for i in range(3):
        one = [m[i:i + 1].clone() for m in maps]
        losses.normalize_noise_(one)
        assert all(torch.allclose(c[i:i + 1], o, atol=1e-6) for c, o in zip(copies, one))
