"""Face embeddings: dlib's descriptor on real photos, CurricularFace IR-101 from a state dict
with the official names, alignment, and the identity-similarity result object."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import DATA
from drfhq_lib.nets import identity
from drfhq_lib.errors import CheckpointFormatError, MissingWeightsError
from drfhq_lib.data.images import pil_to_tensor


def photo(name):
    return pil_to_tensor(Image.open(DATA / f"{name}.jpg"))


@pytest.fixture(scope="module")
def dlib_embedder():
    return identity.build_embedder("substitute")


@pytest.fixture(scope="module")
def descriptors(dlib_embedder):
    out = {}
    for name in ("obama", "obama2", "obama3", "biden"):
        emb, found = dlib_embedder.embed(photo(name))
        assert found.all(), name
        out[name] = emb[0]
    return out


def test_dlib_descriptor_tells_one_person_from_another(descriptors):
    dist = lambda a, b: np.linalg.norm(descriptors[a] - descriptors[b])
    same = [dist("obama", "obama2"), dist("obama", "obama3"), dist("obama2", "obama3")]
    different = [dist("obama", "biden"), dist("obama2", "biden"), dist("obama3", "biden")]
    assert max(same) < 0.6 < min(different)  # dlib's published same-person threshold
    cos = lambda a, b: identity.cosine(descriptors[a][None], descriptors[b][None])[0]
    assert min(cos("obama", "obama2"), cos("obama", "obama3")) > cos("obama", "biden")


def test_identity_similarity_counts_faceless_pairs(dlib_embedder):
    a = [photo("obama"), photo("obama2")]
    b = [photo("obama3"), torch.zeros(1, 3, 120, 100)]  # a blank image has no face
    values = [identity.identity_similarity(x, y, dlib_embedder) for x, y in zip(a, b)]
    result = values[0].merged(values[1])
    assert result.n_pairs == 2 and result.n_no_face == 1
    assert math.isnan(result.values[1])
    assert result.mean == pytest.approx(result.values[0]) and 0.9 < result.mean <= 1
    row = result.as_row()
    assert row["embedder"] == "identity[dlib-resnet-128d]" and row["n_no_face"] == 1


def test_cosine_by_hand():
    a = np.array([[1.0, 0.0], [3.0, 4.0], [1.0, 1.0]])
    b = np.array([[1.0, 1.0], [-3.0, -4.0], [2.0, 2.0]])
    np.testing.assert_allclose(identity.cosine(a, b), [1 / math.sqrt(2), -1.0, 1.0], atol=1e-12)


def test_identity_similarity_is_the_cosine_of_the_two_descriptors(dlib_embedder, descriptors):
    # oracle: cos = <a, b> / (|a| |b|) written out on the descriptors of the two photos
    a, b = descriptors["obama"], descriptors["biden"]
    expected = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    got = identity.identity_similarity(photo("obama"), photo("biden"), dlib_embedder)
    assert got.mean == pytest.approx(expected, rel=1e-6)
    assert got.mean < 0.95  # two people: well below the value of an image with itself (1)


def test_embedder_records_what_it_resolved(dlib_embedder):
    assert dlib_embedder.label == "identity[dlib-resnet-128d]"
    assert [r.name for r in dlib_embedder.resolved] == ["curricularface", "dlib-landmarks68"]
    assert dlib_embedder.resolved[0].path.name == "dlib_face_recognition_resnet_model_v1.dat"


# ----------------------------------------------------------------------------- alignment


def test_similarity_transform_recovers_a_known_similarity():
    angle, scale, shift = 0.3, 1.7, np.array([5.0, -2.0])
    c, s = math.cos(angle), math.sin(angle)
    rot = scale * np.array([[c, -s], [s, c]])
    src = np.random.default_rng(0).uniform(0, 100, (5, 2))
    m = identity.similarity_transform(src, src @ rot.T + shift)
    np.testing.assert_allclose(m[:2, :2], rot, atol=1e-9)
    np.testing.assert_allclose(m[:2, 2], shift, atol=1e-9)


def test_warp_moves_pixels_where_the_transform_says():
    image = torch.zeros(1, 1, 40, 40)
    image[0, 0, 10, 20] = 1.0  # pixel (x=20, y=10)
    m = np.array([[1, 0, -15], [0, 1, -5], [0, 0, 1]], float)  # shift by (-15, -5)
    out = identity.warp(image, m, 16)
    assert out[0, 0, 5, 5] == pytest.approx(1.0) and out.sum() == pytest.approx(1.0)


# ----------------------------------------------------------------------------- CurricularFace


@pytest.fixture(scope="module")
def fake_curricularface(tmp_path_factory):
    torch.manual_seed(0)
    net = identity.IR101()
    for m in net.modules():  # non-trivial statistics, so loading is visible in the output
        if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm1d)):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    state = {k: v.half() for k, v in net.state_dict().items() if v.is_floating_point()}
    state.update({k: v for k, v in net.state_dict().items() if not v.is_floating_point()})
    path = tmp_path_factory.mktemp("cf") / "CurricularFace_Backbone.pth"
    torch.save(state, path)
    return path, state


def test_ir101_has_the_official_parameter_names():
    shapes = {k: tuple(v.shape) for k, v in identity.IR101().state_dict().items()}
    assert shapes["input_layer.0.weight"] == (64, 3, 3, 3)
    assert shapes["input_layer.2.weight"] == (64,)  # PReLU
    assert "body.0.shortcut_layer.0.weight" not in shapes  # 64 -> 64: MaxPool2d(1, 2) shortcut
    assert shapes["body.3.shortcut_layer.0.weight"] == (128, 64, 1, 1)
    assert shapes["body.16.shortcut_layer.1.running_var"] == (256,)
    assert shapes["body.48.res_layer.3.weight"] == (512, 512, 3, 3)
    assert "body.49.res_layer.0.weight" not in shapes  # 3 + 13 + 30 + 3 = 49 units
    assert shapes["output_layer.3.weight"] == (512, 512 * 7 * 7)
    assert shapes["output_layer.4.running_mean"] == (512,)
    assert "output_layer.4.weight" not in shapes  # BatchNorm1d(affine=False)


def test_curricularface_loads_strictly_and_embeds(fake_curricularface, empty_weights):
    path, state = fake_curricularface
    (empty_weights / path.name).symlink_to(path)
    embedder = identity.build_embedder("official")
    assert embedder.label == "curricularface" and embedder.dim == 512
    torch.testing.assert_close(embedder.net.body[20].res_layer[1].weight,
                               state["body.20.res_layer.1.weight"].float())
    face = photo("obama")
    emb, found = embedder.embed(torch.cat([face, torch.zeros_like(face)]))  # one face, one blank
    assert found.tolist() == [True, False]
    assert np.linalg.norm(emb[0]) == pytest.approx(1.0) and np.isnan(emb[1]).all()


def test_curricularface_accepts_a_dataparallel_prefix(tmp_path, fake_curricularface):
    path, state = fake_curricularface
    prefixed = tmp_path / "dp.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, prefixed)
    net = identity.load_curricularface(prefixed)
    loaded = net.state_dict()
    assert loaded.keys() == state.keys()  # every prefixed name found its parameter
    for name in ("input_layer.0.weight", "body.20.res_layer.1.weight",
                 "output_layer.4.running_mean"):
        torch.testing.assert_close(loaded[name], state[name].to(loaded[name].dtype))


def test_another_network_is_refused(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(3)}, path)
    with pytest.raises(CheckpointFormatError, match="IR-101"):
        identity.load_curricularface(path)


def test_official_or_fail_names_file_and_url(empty_weights):
    with pytest.raises(MissingWeightsError) as err:
        identity.build_embedder("official")
    assert "CurricularFace_Backbone.pth" in str(err.value)
    assert "https://drive.google.com/" in str(err.value)


# ----------------------------------------------------------------------------- Tab. 2 crop


def _stripes(cycles: int, n: int = 1024) -> torch.Tensor:
    """[1, 1, n, n] vertical cosine stripes with ``cycles`` periods across the image."""
    x = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    return torch.cos(2 * math.pi * cycles * x).float().view(1, 1, 1, n).expand(1, 1, n, n)


def _amplitude(crop: torch.Tensor, frequency: int) -> float:
    """Amplitude of the horizontal frequency ``frequency`` (cycles across the crop)."""
    row = crop[0, 0].double().mean(0).numpy()
    return float(np.abs(np.fft.rfft(row))[frequency] / (len(row) / 2))


def test_face_crop_of_fine_stripes_does_not_alias():
    # 1024 -> 112 (the CurricularFace crop's size): 84 cycles across the image are 0.75 cycles
    # per output pixel, above the crop's Nyquist (0.5). Sampled, they fold back to the analytic
    # alias frequency |84 - 112| = 28 cycles; a low-passed crop has (almost) nothing there.
    stripes, size = _stripes(84), 112
    m = np.diag([size / 1024, size / 1024, 1.0])
    alias = abs(84 - size * round(84 / size))
    assert alias == 28
    naive = identity.warp(stripes, m, size, antialias=False)
    assert _amplitude(naive, alias) > 0.9  # the one-step bilinear warp: full-contrast alias
    crop = identity.warp(stripes, m, size)
    assert _amplitude(crop, alias) < 0.02  # < 2 % of the stripes' amplitude (energy < 4e-4)
    assert crop.std() < 0.02  # and nothing else either: all the content is above Nyquist


def test_rotated_face_crop_of_fine_stripes_is_flat():
    # a face-crop-like similarity (rotation 0.2 rad, scale 0.35, shifted) and stripes of 0.75
    # cycles per output pixel: their horizontal component, 0.75 cos 0.2 = 0.74, is beyond the
    # crop's Nyquist (0.5), so an ideal low-pass leaves a flat crop (oracle: zero), where the
    # bilinear warp keeps full contrast
    angle, scale = 0.2, 0.35
    c, s = math.cos(angle) * scale, math.sin(angle) * scale
    m = np.array([[c, -s, -90.0], [s, c, -150.0], [0, 0, 1]])
    stripes = _stripes(round(0.75 * scale * 1024))  # 0.75 cycles per output pixel
    assert identity.warp(stripes, m, 112, antialias=False).std() > 0.5
    assert identity.warp(stripes, m, 112).std() < 0.03


def test_face_crop_of_a_smooth_image_equals_a_direct_lanczos_resize():
    # oracle: PIL's LANCZOS resize of the same axis-aligned box, channel by channel in float
    n, size, (x0, y0, side) = 1024, 112, (100, 200, 512)
    yy, xx = (np.mgrid[0:n, 0:n] + 0.5) / n
    planes = [np.sin(2 * np.pi * 3 * xx) * np.cos(2 * np.pi * 2 * yy),
              2 * np.exp(-((xx - 0.5) ** 2 + (yy - 0.4) ** 2) / 0.08) - 1,
              np.cos(2 * np.pi * 1.5 * (xx + yy))]
    image = torch.from_numpy(0.9 * np.stack(planes)).float()[None]
    m = np.array([[size / side, 0, -x0 * size / side], [0, size / side, -y0 * size / side],
                  [0, 0, 1]])
    direct = np.stack([np.asarray(Image.fromarray(p.astype(np.float32) * 0.9, mode="F").resize(
        (size, size), Image.Resampling.LANCZOS, box=(x0, y0, x0 + side, y0 + side)))
        for p in planes])
    np.testing.assert_allclose(identity.warp(image, m, size)[0].numpy(), direct, atol=3e-3)


def test_lanczos_taps_sum_to_one_and_follow_the_kernel():
    taps = identity.lanczos_taps(4, dtype=torch.float64)
    assert len(taps) == 24 and taps.sum().item() == pytest.approx(1.0)
    x = (np.arange(24) + 0.5) / 4 - 3  # offsets in output pixels
    kernel = np.sinc(x) * np.sinc(x / 3)
    np.testing.assert_allclose(taps.numpy(), kernel / kernel.sum(), rtol=1e-12)
    torch.testing.assert_close(taps, taps.flip(0))  # symmetric about the output pixel


def test_antialiased_crop_is_differentiable():
    image = torch.rand(1, 3, 256, 256, requires_grad=True)
    m = np.diag([112 / 256, 112 / 256, 1.0])
    identity.warp(image, m, 112).sum().backward()
    # every output pixel's weights sum to one, so the gradient sums to the number of outputs
    assert image.grad.sum().item() == pytest.approx(3 * 112 * 112, rel=1e-4)
