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
