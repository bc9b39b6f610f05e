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


# ----------------------------------------------------------------------------- Tab. 3 protocols


@pytest.fixture(scope="module")
def untrained_alex(tmp_path_factory):
    """LPIPS-Alex with a seeded random AlexNet trunk: an UNTRAINED stand-in, labelled so."""
    from torch import nn

    from drfhq_lib.nets.perceptual import lpips_from_alex_file

    torch.manual_seed(0)
    convs = {0: nn.Conv2d(3, 64, 11, 4, 2), 3: nn.Conv2d(64, 192, 5, padding=2),
             6: nn.Conv2d(192, 384, 3, padding=1), 8: nn.Conv2d(384, 256, 3, padding=1),
             10: nn.Conv2d(256, 256, 3, padding=1)}
    path = tmp_path_factory.mktemp("alex") / "alexnet-owt-7be5be79.pth"
    torch.save({f"features.{i}.{p}": getattr(c, p).detach() for i, c in convs.items()
                for p in ("weight", "bias")}, path)
    return lpips_from_alex_file(path, label="lpips-alex[UNTRAINED stand-in]")


def test_protocols_are_named_with_the_literatures_first():
    assert metrics.DEFAULT_PAIR_PROTOCOLS == ("256-alex", "native-vgg")
    alex, vgg = (metrics.PAIR_PROTOCOLS[p] for p in metrics.DEFAULT_PAIR_PROTOCOLS)
    assert (alex.size, alex.lpips) == (256, "alex") and (vgg.size, vgg.lpips) == (None, "vgg")
    assert "ReStyle" in alex.description and "HyperStyle" in alex.description
    with pytest.raises(metrics.DrfhqError, match="256-alex"):
        metrics.get_protocol("512-squeeze")


def test_alex_protocol_without_its_trunk_still_gives_l2_and_says_lpips_was_not_run(empty_weights):
    scorer = metrics.pair_scorer("256-alex", "auto")
    assert scorer.lpips_net is None and "alexnet-owt-7be5be79.pth" in scorer.reason
    a = torch.zeros(2, 3, 64, 64)
    row = scorer.row(scorer.score([(a, a + 0.5)]))
    # a constant difference stays constant through any resize: L2 = 0.5^2 at 256 px too
    assert row["protocol"] == "256-alex" and row["size_px"] == 256
    assert row["l2"] == pytest.approx(0.25) and row["n_pairs"] == 2
    assert np.isnan(row["lpips"]) and "not run" in row["lpips_note"]
    assert row["lpips_variant"] == "lpips-alex (not run)"


def test_alex_protocol_scores_pairs_as_the_scoring_scripts_do(untrained_alex):
    # oracle: torchvision's Resize((256, 256)) (bilinear, antialiased) of both images, then
    # the network; L2 = mean squared difference of the resized [-1, 1] images
    import torchvision.transforms.functional as TF

    a, b = photo("obama", (96, 96)), photo("biden", (96, 96))
    big_a = torch.nn.functional.interpolate(a, size=512, mode="bicubic").clamp(-1, 1)
    big_b = torch.nn.functional.interpolate(b, size=512, mode="bicubic").clamp(-1, 1)
    scorer = metrics.pair_scorer("256-alex", lpips_net=untrained_alex)
    for x, y in ((a, b), (big_a, big_b)):  # enlarged (96 px) and shrunk (512 px) to 256
        row = scorer.row(scorer.score([(x, y)]))
        rx, ry = (TF.resize(t, [256, 256], antialias=True) for t in (x, y))
        with torch.no_grad():
            expected = untrained_alex(rx, ry).item()
        assert row["lpips"] == pytest.approx(expected, rel=1e-5)
        assert row["l2"] == pytest.approx((rx - ry).square().mean().item(), rel=1e-4)
        assert row["size_px"] == 256 and row["lpips_variant"] == "lpips-alex[UNTRAINED stand-in]"


def test_native_protocol_scores_the_images_as_given(lpips_net):
    a, b = photo("obama", (64, 64)), photo("biden", (64, 64))
    scorer, = metrics.pair_scorers(["native-vgg"], built={"vgg": lpips_net})
    row = scorer.row(scorer.score([(a, b)]))
    with torch.no_grad():
        assert row["lpips"] == pytest.approx(lpips_net(a, b).item(), rel=1e-6)
    assert row["size_px"] == 64 and row["protocol"] == "native-vgg"
    assert row["l2"] == pytest.approx((a - b).square().mean().item(), rel=1e-6)


# ----------------------------------------------------------------------------- FID noise


def _tiny_generator(seed=0):
    networks = pytest.importorskip("drfhq_lib.nets")
    torch.manual_seed(seed)
    G = networks.Generator(z_dim=16, w_dim=16, img_resolution=16, channel_base=128,
                           channel_max=16)
    with torch.no_grad():  # StyleGAN2 starts with zero noise strength: make the noise visible
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.5)
    return G


def test_fid_samples_use_seeded_random_noise_as_the_official_metric():
    G = _tiny_generator()
    source = metrics.GeneratorSource.from_stylegan(G)
    assert source.noise_mode == "random"
    state = torch.get_rng_state()
    first = torch.cat(list(source.batches(3, 2, seed=5)))
    assert torch.equal(torch.get_rng_state(), state)  # the caller's generator is left as it was
    assert torch.equal(first, torch.cat(list(source.batches(3, 2, seed=5))))  # repeatable
    # oracle: z as torch-fidelity draws it, noise from torch seeded with seed + batch start
    rng = np.random.RandomState(5)
    expected = []
    for start, n in ((0, 2), (2, 1)):
        z = torch.from_numpy(rng.randn(n, 16)).float()
        torch.manual_seed(5 + start)
        with torch.no_grad():
            images = G.synthesis(G.mapping(z, None), noise_mode="random")
        expected.append(metrics.to_float(metrics.to_uint8(images)))
    torch.testing.assert_close(first, torch.cat(expected))
    const = torch.cat(list(metrics.GeneratorSource.from_stylegan(G, noise_mode="const")
                           .batches(3, 2, seed=5)))
    assert (const - first).abs().max() > 1e-3  # the named alternative is another sample
    with pytest.raises(ValueError, match="random"):
        metrics.GeneratorSource.from_stylegan(G, noise_mode="none")
