"""The fine-tuning objective (finetune/objective.py) against closed forms: R1 of a D linear in x,
the path-length penalty of a linear synthesis, and the logistic losses by hand."""

import math

import pytest
import torch
import torch.nn as nn

from drfhq_lib.finetune.losses import IdentityLosses
from drfhq_lib.finetune.objective import StyleGAN2Objective

C, H, W, NUM_WS, W_DIM = 3, 4, 4, 2, 5


class LinearD(nn.Module):
    """D(x) = <a, x>: grad_x D = a for every x."""

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.linspace(-1, 1, C * H * W).view(1, C, H, W))

    def forward(self, x, c):
        return (x * self.a).sum([1, 2, 3])[:, None]


class LinearG(nn.Module):
    """mapping: z -> ws = z repeated on every layer (no style mixing draws); synthesis:
    img = A vec(ws), so the Jacobian of img with respect to ws is A."""

    z_dim = W_DIM

    def __init__(self, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.A = nn.Parameter(torch.randn(C * H * W, NUM_WS * W_DIM, generator=g) * 0.3)
        self.mapping = lambda z, c, update_emas=False: z[:, None].repeat(1, NUM_WS, 1)
        self.synthesis = self._synthesis

    def _synthesis(self, ws, noise_mode="random"):
        return (ws.flatten(1) @ self.A.T).view(-1, C, H, W)


def objective(**changes):
    G = LinearG()
    settings = dict(G=G, D=LinearD(), G_real=LinearG(seed=1), identity=IdentityLosses(),
                    style_mixing=0.0, r1_gamma=10.0, pl_weight=2.0, pl_decay=0.01,
                    pl_batch_shrink=2)
    settings.update(changes)
    return StyleGAN2Objective(**settings)


def test_r1_of_a_linear_d_is_gamma_over_two_times_the_squared_norm_of_a():
    obj = objective(r1_gamma=10.0)
    reals = torch.randn(3, C, H, W)
    stats = obj.disc_reg(reals, gain=1.0)
    a = obj.D.a.detach()
    # grad_x <a, x> = a, so |grad|^2 = |a|^2 for every image, and R1 = gamma/2 |a|^2
    assert stats["r1_penalty"].item() == pytest.approx(a.square().sum().item(), rel=1e-6)
    # d/da (gamma/2 |a|^2) = gamma a: the gradient D's parameters get from the phase
    torch.testing.assert_close(obj.D.a.grad, 10.0 * a, rtol=1e-6, atol=1e-6)


def test_r1_gain_multiplies_the_gradient():
    obj = objective(r1_gamma=1.0)
    obj.disc_reg(torch.randn(2, C, H, W), gain=16.0)  # the lazy regulariser's interval
    torch.testing.assert_close(obj.D.a.grad, 16.0 * obj.D.a.detach(), rtol=1e-6, atol=1e-6)


def test_path_length_of_a_linear_synthesis_is_the_norm_of_a_transpose_y():
    obj = objective(pl_weight=2.0, pl_decay=0.01, pl_batch_shrink=2)
    z = torch.randn(4, W_DIM)
    torch.manual_seed(7)
    stats = obj.gen_reg(z, gain=1.0)
    # oracle: the same y (the phase's only random draw), then J^T y = A^T vec(y) by hand
    torch.manual_seed(7)
    y = torch.randn(2, C, H, W) / math.sqrt(H * W)
    A = obj.G.A.detach()
    grads = (y.flatten(1) @ A).view(2, NUM_WS, W_DIM)  # [batch, num_ws, w_dim]
    lengths = grads.square().sum(2).mean(1).sqrt()
    pl_mean = 0.0 + 0.01 * (lengths.mean() - 0.0)  # lerp from the initial 0
    penalty = (lengths - pl_mean).square().mean()
    assert stats["pl_mean"].item() == pytest.approx(pl_mean.item(), rel=1e-5)
    assert stats["pl_penalty"].item() == pytest.approx(penalty.item(), rel=1e-5)
    assert obj.pl_mean.item() == pytest.approx(pl_mean.item(), rel=1e-5)  # kept for next time
    assert obj.G.A.grad is not None and torch.isfinite(obj.G.A.grad).all()


def test_path_length_mean_is_an_exponential_moving_average():
    obj = objective(pl_decay=0.5)
    z = torch.randn(4, W_DIM)
    A = obj.G.A.detach()
    expected = 0.0
    for seed in (1, 2):
        torch.manual_seed(seed)
        stats = obj.gen_reg(z, gain=1.0)
        torch.manual_seed(seed)
        y = torch.randn(2, C, H, W) / math.sqrt(H * W)
        batch_mean = (y.flatten(1) @ A).view(2, NUM_WS, W_DIM).square().sum(2).mean(1).sqrt()
        expected = expected + 0.5 * (batch_mean.mean().item() - expected)
        assert stats["pl_mean"].item() == pytest.approx(expected, rel=1e-5)


def test_discriminator_and_generator_logistic_losses_by_hand():
    obj = objective()
    reals = torch.randn(2, C, H, W)
    z = torch.randn(3, W_DIM)
    stats = obj.disc_main(reals, z, gain=1.0)
    softplus = lambda t: math.log1p(math.exp(t))
    with torch.no_grad():
        fake_logits = obj.D(obj.G.synthesis(obj.G.mapping(z, None)), None).flatten().tolist()
        real_logits = obj.D(reals, None).flatten().tolist()
    expected = (sum(map(softplus, fake_logits)) / 3
                + sum(softplus(-t) for t in real_logits) / 2)
    assert stats["D_loss"].item() == pytest.approx(expected, rel=1e-5)
    g_stats = obj.gen_main(z, gain=1.0)  # no identity networks: the adversarial term alone
    expected_g = sum(softplus(-t) for t in fake_logits) / 3
    assert g_stats["G_adv"].item() == pytest.approx(expected_g, rel=1e-5)
    assert g_stats["G_total"].item() == pytest.approx(expected_g, rel=1e-5)


def test_generator_main_adds_the_identity_sum():
    sketch = nn.Tanh()
    obj = objective(identity=IdentityLosses(sketch, None, lambda_sketch=0.5, sketch_size=H))
    z = torch.randn(2, W_DIM)
    stats = obj.gen_main(z, gain=1.0)
    with torch.no_grad():
        ws = obj.G.mapping(z, None)
        a, b = obj.G_real.synthesis(ws), obj.G.synthesis(ws)
        l_sketch = (torch.tanh(a) - torch.tanh(b)).abs().flatten(1).sum(1).mean()
    assert l_sketch > 0.1  # G_real and G differ, so the term is not trivially zero
    assert stats["sketch"].item() == pytest.approx(l_sketch.item(), rel=1e-5)
    assert stats["G_total"].item() == pytest.approx(
        stats["G_adv"].item() + 0.5 * l_sketch.item(), rel=1e-5)


def test_identity_terms_vanish_for_identical_generators_under_the_shared_noise_policy():
    """G_rendering = G_real with strong noise: the same noise draw makes both images equal, so
    both terms are exactly 0; the old policy (G_real on its constant noise) would not be."""
    import copy

    from drfhq_lib.finetune.tiny import tiny_networks

    G = tiny_networks(resolution=16, channels=16, z_dim=8)["G"]
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.5)
    G_real = copy.deepcopy(G)
    sketch = nn.Tanh()
    identity = IdentityLosses(sketch, None, lambda_sketch=1.0, sketch_size=16)
    obj = StyleGAN2Objective(G=G, D=LinearDAny(), G_real=G_real, identity=identity,
                             style_mixing=0.0)
    torch.manual_seed(0)
    stats = obj.gen_main(torch.randn(2, 8), gain=1.0)
    assert stats["sketch"].item() == 0.0
    with torch.no_grad():  # the constant-noise reference the policy replaces
        ws = G.mapping(torch.randn(2, 8), None)
        const = torch.tanh(G_real.synthesis(ws, noise_mode="const"))
        random = torch.tanh(G.synthesis(ws, noise_mode="random"))
    assert (const - random).abs().sum() > 1.0


class LinearDAny(nn.Module):
    """D(x) = mean of x, for any image size."""

    def forward(self, x, c):
        return x.mean([1, 2, 3])[:, None]
