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


# ----------------------------------------------------------------------------- LPIPS-AlexNet


@pytest.fixture(scope="module")
def fake_alexnet(tmp_path_factory):
    """torchvision's alexnet file layout (``features.<i>.weight``) with random values: an
    UNTRAINED stand-in (the official ImageNet file cannot be downloaded here). Only the
    convolutional ``features`` (torchvision's AlexNet.features, built here so the 58M-weight
    classifier is never initialised), which is all LPIPS reads."""
    from types import SimpleNamespace

    from torch import nn

    torch.manual_seed(0)
    features = nn.Sequential(
        nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2))
    path = tmp_path_factory.mktemp("hub") / "alexnet-owt-7be5be79.pth"
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, path)
    return path, SimpleNamespace(features=features)


def test_lpips_alex_equals_the_lpips_packages_own_construction(fake_alexnet, face, monkeypatch):
    # oracle: lpips.LPIPS(net="alex") building its trunk from torchvision's alexnet itself
    # (here the same random model) and reading its own alex.pth heads
    import lpips
    import lpips.pretrained_networks as pn

    path, model = fake_alexnet
    net = perceptual.lpips_from_alex_file(path, label="lpips-alex[UNTRAINED stand-in]")
    monkeypatch.setattr(pn.tv, "alexnet", lambda *a, **k: model)
    reference = lpips.LPIPS(net="alex", version="0.1", verbose=False).eval()
    other = (face.flip(-1) + 0.1 * torch.randn_like(face)).clamp(-1, 1)
    with torch.no_grad():
        expected = reference(face, other).flatten()
        got = net(face, other)
        assert net(face, face).item() == 0
    assert expected.item() > 0
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)
    assert net.trunk_name == "alex" and net.label == "lpips-alex[UNTRAINED stand-in]"
    assert [r.name for r in net.resolved] == ["lpips-alex", "lpips-alex-heads"]
    assert net.resolved[1].path.name == "alex.pth"  # shipped inside the lpips package


def test_lpips_alex_refuses_another_file(tmp_path):
    from drfhq_lib.errors import CheckpointFormatError

    path = tmp_path / "vgg-like.pth"  # VGG16's layout: convolutions at 0, 2, 5, ... (no 3)
    torch.save({f"features.{i}.{p}": torch.zeros(1) for i in (0, 2, 5) for p in ("weight", "bias")},
               path)
    with pytest.raises(CheckpointFormatError, match="alexnet-owt-7be5be79.pth"):
        perceptual.lpips_from_alex_file(path)


def test_lpips_alex_has_no_substitute_and_names_its_file(empty_weights):
    # any `prefer`: the AlexNet trunk is the official file or an error saying how to get it
    for prefer in ("auto", "substitute", "official"):
        with pytest.raises(MissingWeightsError) as err:
            perceptual.build_lpips(prefer, net="alex")
        assert "alexnet-owt-7be5be79.pth" in str(err.value)
        assert "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth" in str(err.value)
    with pytest.raises(ValueError, match="squeeze"):
        perceptual.build_lpips(net="squeeze")
