"""Fréchet distance (closed form), FD-dlib on tiny sets, the torch-fidelity wiring of FID, image
sources, and the LPIPS / L2 / identity tables."""

import csv
import json
import os
import pickle
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import DATA
from drfhq_lib.eval import metrics
from drfhq_lib.errors import CheckpointFormatError, MissingWeightsError
from drfhq_lib.data.images import pil_to_tensor


def photo(name, size=None):
    image = Image.open(DATA / f"{name}.jpg")
    return pil_to_tensor(image.resize(size) if size else image)


# ----------------------------------------------------------------------------- Fréchet distance


def test_frechet_distance_of_diagonal_gaussians_has_the_closed_form():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    v1, v2 = rng.uniform(0.5, 2, 5), rng.uniform(0.5, 2, 5)
    expected = ((mu1 - mu2) ** 2).sum() + (v1 + v2 - 2 * np.sqrt(v1 * v2)).sum()
    got = metrics.frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2))
    assert got == pytest.approx(expected, rel=1e-9)
    same = metrics.frechet_distance(mu1, np.diag(v1), mu1, np.diag(v1))
    assert same == pytest.approx(0, abs=1e-9)


def test_frechet_distance_of_rotated_covariances():
    # S2 = R S1 R^T, same trace: FD = 2 Tr(S1) - 2 Tr((S1 S2)^1/2); for 2-D, computed by hand
    s1 = np.diag([4.0, 1.0])
    r = np.array([[0.0, -1.0], [1.0, 0.0]])  # 90 degrees: S2 = diag(1, 4), S1 S2 = diag(4, 4)
    got = metrics.frechet_distance(np.zeros(2), s1, np.zeros(2), r @ s1 @ r.T)
    assert got == pytest.approx(10 - 2 * 4, rel=1e-9)


def test_frechet_distance_survives_singular_covariances():
    s1, s2 = np.diag([1.0, 0, 0]), np.diag([0, 1.0, 0])
    got = metrics.frechet_distance(np.zeros(3), s1, np.ones(3), s2)
    assert got == pytest.approx(3 + 2, abs=1e-2)  # product is zero: no cross term


def test_frechet_distance_of_full_2d_covariances_by_the_2x2_square_root_identity():
    # oracle: for a 2x2 M with non-negative eigenvalues, Tr(M^1/2) = sqrt(Tr M + 2 sqrt(det M))
    rng = np.random.default_rng(3)
    for _ in range(5):
        a, b = rng.normal(size=(2, 2)), rng.normal(size=(2, 2))
        s1, s2 = a @ a.T + 0.1 * np.eye(2), b @ b.T + 0.1 * np.eye(2)
        mu1, mu2 = rng.normal(size=2), rng.normal(size=2)
        m = s1 @ s2
        tr_sqrt = np.sqrt(np.trace(m) + 2 * np.sqrt(np.linalg.det(m)))
        expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt
        got = metrics.frechet_distance(mu1, s1, mu2, s2)
        assert got == pytest.approx(expected, rel=1e-7, abs=1e-9)


def test_frechet_distance_of_sampled_gaussians_approaches_the_closed_form():
    # two different distributions: N(0, I) and N((3, 0), diag(4, 1)); FD = 9 + (1 + 4 - 2*2) = 10
    rng = np.random.default_rng(4)
    a = rng.normal(size=(200_000, 2))
    b = rng.normal(size=(200_000, 2)) * [2.0, 1.0] + [3.0, 0.0]
    got = metrics.frechet_distance(*metrics.gaussian_stats(a), *metrics.gaussian_stats(b))
    assert got == pytest.approx(10.0, abs=0.05)


def test_gaussian_stats_needs_two_rows():
    mu, sigma = metrics.gaussian_stats(np.array([[0.0, 1.0], [2.0, 3.0]]))
    np.testing.assert_allclose(mu, [1, 2])
    np.testing.assert_allclose(sigma, [[2, 2], [2, 2]])
    with pytest.raises(ValueError):
        metrics.gaussian_stats(np.zeros((1, 3)))


# ----------------------------------------------------------------------------- FD-dlib


@pytest.fixture(scope="module")
def faces():
    return {n: photo(n) for n in ("obama", "obama2", "obama3", "biden")}


class _MeanEmbedder:
    """A stand-in descriptor: (the image's mean value, 0), no face when the image is all -1."""

    dim, resolved = 2, []

    def embed(self, images):
        found = images.flatten(1).amax(1) > -1
        mean = images.flatten(1).mean(1, keepdim=True).double()
        return torch.cat([mean, torch.zeros_like(mean)], 1).numpy(), found.numpy()


def test_fd_dlib_hand_computed_with_a_stand_in_descriptor():
    # descriptors a = {0, 2} (mean 1, var 2), b = {1, 5} (mean 3, var 8):
    # FD = (1 - 3)^2 + 2 + 8 - 2 sqrt(2 * 8) = 4 + 10 - 8 = 6; the all -1 image has no face
    img = lambda v: torch.full((1, 3, 4, 4), float(v))
    result = metrics.fd_dlib([img(0), img(2)], [torch.cat([img(1), img(5)]), img(-1)],
                             _MeanEmbedder())
    # (the second, constant coordinate adds nothing but the eps regularisation of a singular
    # covariance: ~1e-6)
    assert result.metric == "FD-dlib" and result.value == pytest.approx(6.0, abs=1e-3)
    assert (result.n_a, result.n_b, result.n_no_face_a, result.n_no_face_b) == (2, 3, 0, 1)


def test_fd_dlib_on_two_tiny_sets(faces):
    obamas = [faces["obama"], faces["obama2"], faces["obama3"]]
    bidens = [faces["biden"], faces["biden"].flip(-1), faces["biden"][..., 20:, :]]
    other = metrics.fd_dlib(obamas, bidens + [torch.zeros(1, 3, 64, 64)])
    assert other.value > 0.2  # descriptors of two people are ~0.6 apart, within one < 0.5
    assert (other.n_a, other.n_b, other.n_no_face_b) == (3, 4, 1)
    assert other.as_row()["metric"] == "FD-dlib"
    assert {r.label for r in other.resolved} == {"FD-dlib", "dlib-landmarks68"}


def test_official_fid_or_fail_names_the_inception_file(empty_weights, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    Image.new("RGB", (8, 8)).save(folder / "a.png")
    source = metrics.GeneratorSource(lambda z: torch.zeros(len(z), 3, 8, 8), z_dim=4)
    with pytest.raises(MissingWeightsError) as err:
        metrics.generator_distance(source, folder, num_samples=2, prefer="official")
    assert "weights-inception-2015-12-05-6726825d.pth" in str(err.value)
    assert "https://github.com/toshas/torch-fidelity/releases/" in str(err.value)


# ----------------------------------------------------------------------------- FID wiring


def test_fid_hands_torch_fidelity_a_sanitized_copy_and_our_inputs(tmp_path, monkeypatch):
    import torch_fidelity

    weights_file = tmp_path / "weights-inception-2015-12-05-6726825d.pth"
    torch.save({"fc.weight": torch.ones(2, 2)}, weights_file)
    seen = {}

    def fake_calculate_metrics(**kwargs):
        seen.update(kwargs)
        seen["loaded"] = torch.load(kwargs["feature_extractor_weights_path"], weights_only=True)
        seen["sample"] = kwargs["input1"](torch.randn(2, kwargs["input1"].z_size))
        seen["item"] = kwargs["input2"][0]
        return {torch_fidelity.KEY_METRIC_FID: 12.5}

    monkeypatch.setattr(torch_fidelity, "calculate_metrics", fake_calculate_metrics)
    folder = tmp_path / "data"
    folder.mkdir()
    Image.new("RGB", (8, 8), (255, 0, 0)).save(folder / "a.png")
    source = metrics.GeneratorSource(lambda z: torch.ones(len(z), 3, 8, 8), z_dim=4)
    value = metrics.fid_torch_fidelity(source, folder, weights_file, num_samples=10)
    assert value == 12.5
    assert seen["fid"] and seen["feature_extractor"] == "inception-v3-compat"
    assert seen["cuda"] is False and seen["input1_model_num_samples"] == 10
    assert seen["feature_extractor_weights_path"] != str(weights_file)
    torch.testing.assert_close(seen["loaded"]["fc.weight"], torch.ones(2, 2))
    assert seen["sample"].dtype == torch.uint8 and seen["sample"].max() == 255
    assert seen["item"].dtype == torch.uint8 and seen["item"][0, 0, 0] == 255


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_fid_refuses_weights_that_run_code(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "weights-inception-2015-12-05-6726825d.pth"
    torch.save({"x": _Exploit(marker)}, bad, pickle_protocol=2)
    source = metrics.GeneratorSource(lambda z: torch.zeros(len(z), 3, 8, 8), z_dim=4)
    folder = tmp_path / "data"
    folder.mkdir()
    Image.new("RGB", (8, 8)).save(folder / "a.png")
    with pytest.raises(CheckpointFormatError, match="weights-only"):
        metrics.fid_torch_fidelity(source, folder, bad, num_samples=2)
    assert not marker.exists()


# ----------------------------------------------------------------------------- image sources


def test_generator_source_is_torch_fidelitys_interface():
    from torch_fidelity import GenerativeModelBase

    source = metrics.GeneratorSource(lambda z: z[:, :3, None, None].expand(-1, 3, 4, 4).tanh(), 8)
    assert isinstance(source, GenerativeModelBase)
    assert (source.z_size, source.z_type, source.num_classes) == (8, "normal", 0)
    out = source(torch.randn(5, 8))
    assert out.dtype == torch.uint8 and out.shape == (5, 3, 4, 4)
    a = list(source.batches(5, 2, seed=3))
    b = list(source.batches(5, 2, seed=3))
    assert [len(x) for x in a] == [2, 2, 1] and all(torch.equal(x, y) for x, y in zip(a, b))
    assert a[0].min() >= -1 and a[0].max() <= 1


def test_generator_source_from_a_stylegan_generator():
    networks = pytest.importorskip("drfhq_lib.nets")
    torch.manual_seed(0)
    G = networks.Generator(z_dim=16, w_dim=16, img_resolution=16, channel_base=128, channel_max=16)
    source = metrics.GeneratorSource.from_stylegan(G)
    assert source.z_size == 16 and source(torch.randn(2, 16)).shape == (2, 3, 16, 16)
    torch.manual_seed(1)
    G_b = networks.Generator(z_dim=16, w_dim=16, img_resolution=16, channel_base=128,
                             channel_max=16)
    (a, b), = metrics.paired_samples(G, G_b, 2, 4, seed=7)
    # oracle: the same w (G's mapping of seeds 7, 8 drawn the official way) through each synthesis
    z = torch.from_numpy(np.concatenate([np.random.RandomState(s).randn(1, 16) for s in (7, 8)]))
    with torch.no_grad():
        ws = G.mapping(z.float(), None)
        torch.testing.assert_close(a, G.synthesis(ws, noise_mode="const"))
        torch.testing.assert_close(b, G_b.synthesis(ws, noise_mode="const"))
    assert (a - b).abs().mean() > 1e-3  # two generators, so two different images


def test_image_files_from_folder_and_zip(tmp_path):
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    for i, name in enumerate(["a.png", "sub/b.jpg", "c.txt"]):
        if name.endswith("txt"):
            (folder / name).write_text("not an image")
        else:
            Image.new("RGB", (6, 6), (i * 100, 0, 0)).save(folder / name)
    archive = tmp_path / "images.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(folder / "a.png", "00000/img00000000.png")
        z.write(folder / "sub/b.jpg", "00000/img00000001.jpg")
        z.writestr("dataset.json", "{}")
    for source in (folder, archive):
        data = metrics.ImageFiles(source)
        assert len(data) == 2 and data[0].shape == (3, 6, 6) and data[0].dtype == torch.uint8
        assert data[0][0, 0, 0] == 0 and data[1][0, 0, 0] > 50
        pickle.loads(pickle.dumps(data))[1]  # DataLoader workers get their own zip handle
        batches = list(data.batches(batch_size=2))
        assert batches[0].shape == (2, 3, 6, 6) and batches[0].min() >= -1
        assert batches[0][1, 0, 0, 0].item() == pytest.approx(100 / 127.5 - 1, abs=0.03)  # b.jpg


# ----------------------------------------------------------------------------- tables


@pytest.fixture(scope="module")
def lpips_net(lpips_hed):
    return lpips_hed


def test_pair_table_of_identical_pairs_is_zero(lpips_net):
    a = photo("obama", (64, 80))
    b = photo("biden", (64, 80))
    result = metrics.pair_table([(a, a), (torch.cat([b, b]), torch.cat([b, b]))], lpips_net)
    assert result.n_pairs == 3 and result.lpips == [0, 0, 0] and result.l2 == [0, 0, 0]
    shifted = metrics.pair_table([(a, a + 0.5)], lpips_net)
    assert shifted.l2[0] == pytest.approx(0.25) and shifted.lpips[0] > 0
    assert shifted.as_row()["lpips_variant"] == "lpips-vgg16[hed-trunk]"


def test_identity_table_rows_and_written_csv(tmp_path, faces):
    from drfhq_lib.nets.identity import build_embedder

    embedder = build_embedder("substitute")
    rows = metrics.identity_table({
        "same person": [(faces["obama"], faces["obama2"])],
        "other person": [(faces["obama"], faces["biden"]),
                         (faces["obama2"], torch.zeros(1, 3, 64, 64))],
    }, embedder)
    assert [r["method"] for r in rows] == ["same person", "other person"]
    assert rows[0]["identity_similarity"] > rows[1]["identity_similarity"]
    assert (rows[1]["n_pairs"], rows[1]["n_no_face"]) == (2, 1)
    path = metrics.write_table(rows, tmp_path / "tab2.csv", embedder.resolved, {"pairs": 3})
    with open(path) as f:
        assert [r["method"] for r in csv.DictReader(f)] == ["same person", "other person"]
    sidecar = json.loads((tmp_path / "tab2.csv.provenance.json").read_text())
    assert "identity[dlib-resnet-128d]" in sidecar["substitutes_used"]
