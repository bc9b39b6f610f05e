"""LPIPS-VGG16 (official trunk from a torchvision-format file, HED-trunk substitute), resize and
the Gaussian blur of L_color."""

import math

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from conftest import DATA
from drfhq_lib.nets import perceptual
from drfhq_lib.nets import weights
from drfhq_lib.errors import ChecksumError, MissingWeightsError
from drfhq_lib.data.images import pil_to_tensor


@pytest.fixture(scope="module")
def face():
    return pil_to_tensor(Image.open(DATA / "obama.jpg").resize((64, 80)))


# ----------------------------------------------------------------------------- blur and resize


def test_gaussian_kernel_sums_to_one_and_matches_the_formula():
    k2 = perceptual.gaussian_kernel2d(13, 10.0, dtype=torch.float64)
    assert k2.shape == (13, 13)
    assert math.isclose(k2.sum().item(), 1.0, rel_tol=1e-12)
    direct = torch.tensor([[math.exp(-((x - 6) ** 2 + (y - 6) ** 2) / (2 * 10.0 ** 2))
                            for x in range(13)] for y in range(13)], dtype=torch.float64)
    torch.testing.assert_close(k2, direct / direct.sum())


def test_blur_is_torchvisions_and_keeps_constants(face):
    import torchvision.transforms.functional as TF

    blurred = perceptual.gaussian_blur(face)
    torch.testing.assert_close(blurred, TF.gaussian_blur(face, [13, 13], [10.0, 10.0]),
                               atol=1e-5, rtol=0)
    flat = torch.full((1, 3, 20, 20), 0.3)
    torch.testing.assert_close(perceptual.gaussian_blur(flat), flat)
    assert blurred.std() < face.std()


def test_resize_averages_areas_when_shrinking():
    x = torch.rand(2, 3, 64, 64)
    torch.testing.assert_close(perceptual.resize(x, 32), F.avg_pool2d(x, 2))
    assert perceptual.resize(x, 64) is x
    assert perceptual.resize(x, 100).shape == (2, 3, 100, 100)


def test_bad_kernel_parameters_are_refused():
    with pytest.raises(ValueError):
        perceptual.gaussian_kernel1d(12, 10.0)
    with pytest.raises(ValueError):
        perceptual.gaussian_kernel1d(13, 0.0)


# ----------------------------------------------------------------------------- LPIPS substitute


def test_lpips_of_an_image_with_itself_is_zero_and_symmetric(lpips_hed, face):
    other = face.flip(-1)
    with torch.no_grad():
        assert lpips_hed(face, face).item() == 0.0
        ab, ba = lpips_hed(face, other), lpips_hed(other, face)
    torch.testing.assert_close(ab, ba)
    assert ab.item() > 0.05


def test_lpips_grows_with_noise_and_sees_blur(lpips_hed, face):
    noise = torch.randn(face.shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        d = [lpips_hed(face, face + s * noise).item() for s in (0.02, 0.1, 0.3)]
        blur = lpips_hed(face, perceptual.gaussian_blur(face)).item()
    assert 0 < d[0] < d[1] < d[2]
    assert blur > 0.05


def test_lpips_substitute_is_labelled_and_records_its_files(lpips_hed):
    assert lpips_hed.label == "lpips-vgg16[hed-trunk]"
    assert [r.name for r in lpips_hed.resolved] == ["lpips-vgg16", "lpips-heads"]
    assert lpips_hed.resolved[0].path == weights.official_path("hed")
    assert not any(p.requires_grad for p in lpips_hed.parameters())


def test_lpips_is_per_image(lpips_hed, face):
    batch = torch.cat([face, face.flip(-1)])
    with torch.no_grad():
        d = lpips_hed(batch, torch.cat([face, face]))
    assert d.shape == (2,) and d[0] == 0 and d[1] > 0


def test_lpips_equals_the_lpips_package_and_a_cached_target_equals_both(lpips_hed, face):
    noisy = (face + 0.2 * torch.randn_like(face)).clamp(-1, 1)
    batch, targets = torch.cat([noisy, face.flip(-1)]), torch.cat([face, face])
    with torch.no_grad():
        package = lpips_hed.net(batch, targets).flatten()
        ours = lpips_hed(batch, targets)
        cached = lpips_hed.against(targets)(batch)
    assert package.min() > 0.01
    assert torch.allclose(ours, package, rtol=1e-5) and torch.allclose(cached, package, rtol=1e-5)


# ----------------------------------------------------------------------------- LPIPS official


@pytest.fixture(scope="module")
def fake_vgg16(tmp_path_factory):
    """torchvision's vgg16 file layout (``features.<i>.weight``) with random values."""
    import torchvision

    torch.manual_seed(0)
    features = torchvision.models.vgg16(weights=None).features.state_dict()
    state = {f"features.{k}": v for k, v in features.items()}
    path = tmp_path_factory.mktemp("hub") / "vgg16-397923af.pth"
    torch.save(state, path)
    return path, state


def test_official_trunk_loads_strictly_from_a_torchvision_file(fake_vgg16, face):
    path, state = fake_vgg16
    net = perceptual.lpips_from_vgg16_file(path)
    assert net.label == "lpips-vgg16" and net.resolved[0].is_official
    trunk = net.net.net
    torch.testing.assert_close(getattr(trunk.slice1, "0").weight, state["features.0.weight"])
    torch.testing.assert_close(getattr(trunk.slice3, "14").bias, state["features.14.bias"])
    torch.testing.assert_close(getattr(trunk.slice5, "28").weight, state["features.28.weight"])
    with torch.no_grad():
        assert net(face, face).item() == 0
        assert torch.isfinite(net(face, face.flip(-1))).all()
    import lpips

    assert isinstance(net.net.scaling_layer, lpips.lpips.ScalingLayer)  # ImageNet RGB input


def test_official_or_fail_names_the_file_and_url(empty_weights):
    with pytest.raises(MissingWeightsError) as err:
        perceptual.build_lpips("official")
    assert "vgg16-397923af.pth" in str(err.value)
    assert "https://download.pytorch.org/models/vgg16-397923af.pth" in str(err.value)


def test_registry_checks_the_published_digest_of_the_trunk(empty_weights, fake_vgg16):
    (empty_weights / "vgg16-397923af.pth").write_bytes(fake_vgg16[0].read_bytes())
    with pytest.raises(ChecksumError, match="397923af"):
        perceptual.build_lpips("official")


def test_lpips_stays_deterministic_under_a_parents_train_mode(lpips_hed, face):
    parent = torch.nn.Sequential(lpips_hed).train()
    assert not lpips_hed.training and not lpips_hed.net.lin0.training
    with torch.no_grad():
        d1, d2 = lpips_hed(face, face.flip(-1)), lpips_hed(face, face.flip(-1))
    assert torch.equal(d1, d2) and parent.training
