"""StyleGAN2 networks: numerics of the ops, architecture facts, and the three checkpoint formats.

Official-format pickles are produced here without NVIDIA's code: a stand-in object whose
__reduce__ names ``torch_utils.persistence._reconstruct_persistent_obj`` (registered in
sys.modules only while pickling) writes exactly the records an official pickle holds. Its
embedded ``module_src`` would create a marker file if anything executed it.
"""

import builtins
import contextlib
import math
import os
import pickle
import re
import subprocess
import sys
import types
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from drfhq_lib.errors import CheckpointFormatError, UnsafeCheckpointError
from drfhq_lib.nets import Discriminator, Generator, load_extra, load_network, save_network
from drfhq_lib.nets import ops
from drfhq_lib.nets.stylegan2 import FullyConnectedLayer, MinibatchStdLayer

TINY = dict(z_dim=32, w_dim=32, img_resolution=32, channel_base=512, channel_max=32)
TINY_D = dict(img_resolution=32, channel_base=512, channel_max=32)


def randomize_(module, seed):
    """Non-zero biases, noise strengths and w_avg, so that every tensor matters in a test."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if name.endswith(("bias", "noise_strength", "w_avg")):
                tensor.add_(torch.randn(tensor.shape, generator=gen) * 0.5)
    return module


def tiny_g(seed=0, **kwargs):
    torch.manual_seed(seed)
    return randomize_(Generator(**{**TINY, **kwargs}), seed).eval()


def tiny_d(seed=0, **kwargs):
    torch.manual_seed(seed)
    return randomize_(Discriminator(**{**TINY_D, **kwargs}), seed).eval()


# ----------------------------------------------------------------------------------------
# Ops against straightforward references


def upfirdn_loops(x, f, up, down, pad):
    """Textbook upfirdn on numpy: zero-insert, pad, true convolution, keep every down-th."""
    x, f = x.double().numpy(), f.double().numpy()
    n, c, h, w = x.shape
    z = np.zeros((n, c, h * up, w * up))
    z[:, :, ::up, ::up] = x
    x0, x1, y0, y1 = pad
    z = np.pad(z, ((0, 0), (0, 0), (y0, y1), (x0, x1)))
    kh, kw = f.shape
    out_h, out_w = z.shape[2] - kh + 1, z.shape[3] - kw + 1
    y = np.zeros((n, c, out_h, out_w))
    for i in range(out_h):
        for j in range(out_w):
            for a in range(kh):
                for b in range(kw):
                    y[:, :, i, j] += z[:, :, i + a, j + b] * f[kh - 1 - a, kw - 1 - b]
    return torch.from_numpy(y[:, :, ::down, ::down]).float()


@pytest.mark.parametrize("up,down,pad", [(2, 1, (2, 1, 2, 1)), (1, 2, (1, 1, 1, 1)),
                                         (1, 1, (1, 2, 0, 3)), (2, 1, (0, 3, 1, 2))])
def test_upfirdn2d_matches_textbook_loops(up, down, pad):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 6, 6)
    f = torch.rand(4, 4)  # asymmetric, so a flipped filter would fail
    assert torch.allclose(ops.upfirdn2d(x, f, up=up, down=down, padding=pad),
                          upfirdn_loops(x, f, up, down, pad), atol=1e-5)


def test_resample_filter_and_dc_gain():
    f = ops.setup_filter([1, 3, 3, 1])
    taps = torch.tensor([1., 3, 3, 1])
    assert torch.equal(f, torch.outer(taps, taps) / 64)
    flat = torch.full([1, 2, 8, 8], 0.7)
    assert ops.upsample2d(flat, f).shape == (1, 2, 16, 16)
    inner = ops.upsample2d(flat, f)[..., 2:-2, 2:-2]  # away from the zero padding
    assert torch.allclose(inner, torch.full_like(inner, 0.7))
    assert ops.downsample2d(flat, f).shape == (1, 2, 4, 4)
    inner = ops.downsample2d(flat, f)[..., 1:-1, 1:-1]
    assert torch.allclose(inner, torch.full_like(inner, 0.7))


def test_conv2d_resample_padding_conventions():
    """A centred delta kernel must reduce the up/down convolutions to pure FIR resampling."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 8)
    f = ops.setup_filter([1, 3, 3, 1])
    delta = torch.zeros(3, 3, 3, 3)
    delta[range(3), range(3), 1, 1] = 1
    up = ops.conv2d_resample(x, delta, f=f, up=2, padding=1)
    assert torch.allclose(up, ops.upsample2d(x, f), atol=1e-6)
    down = ops.conv2d_resample(x, delta, f=f, down=2, padding=1)
    assert torch.allclose(down, ops.downsample2d(x, f), atol=1e-6)
    down1x1 = ops.conv2d_resample(x, delta[:, :, 1:2, 1:2], f=f, down=2)
    assert torch.allclose(down1x1, ops.downsample2d(x, f), atol=1e-6)


@pytest.mark.parametrize("demodulate", [True, False])
@pytest.mark.parametrize("fused", [True, False])
def test_modulated_conv2d_matches_einsum(demodulate, fused):
    torch.manual_seed(0)
    x, weight, styles = torch.randn(2, 4, 5, 5), torch.randn(3, 4, 3, 3), torch.randn(2, 4)
    w = weight[None] * styles[:, None, :, None, None]  # [N, O, I, 3, 3]
    if demodulate:
        w = w / torch.sqrt(w.square().sum(dim=[2, 3, 4], keepdim=True) + 1e-8)
    patches = F.unfold(x, 3, padding=1)  # [N, I*9, 25]
    expected = torch.einsum("nok,nkl->nol", w.reshape(2, 3, -1), patches).reshape(2, 3, 5, 5)
    got = ops.modulated_conv2d(x, weight, styles, padding=1, demodulate=demodulate,
                               fused_modconv=fused)
    assert torch.allclose(got, expected, atol=1e-5)


def test_bias_act_and_equalized_fc():
    torch.manual_seed(0)
    x, b = torch.randn(4, 6), torch.randn(6)
    expected = (F.leaky_relu(x + b, 0.2) * math.sqrt(2)).clamp(-0.5, 0.5)
    assert torch.allclose(ops.bias_act(x, b, act="lrelu", clamp=0.5), expected)
    with torch.no_grad():  # the in-place path
        assert torch.allclose(ops.bias_act(x, b, act="lrelu", clamp=0.5), expected)
    fc = FullyConnectedLayer(6, 5, activation="lrelu", lr_multiplier=0.01, bias_init=1)
    assert torch.allclose(fc.weight.std(), torch.tensor(100.0), rtol=0.5)  # stored unscaled
    expected = F.leaky_relu(x @ (fc.weight * 0.01 / math.sqrt(6)).t() + fc.bias * 0.01, 0.2)
    assert torch.allclose(fc(x), expected * math.sqrt(2), atol=1e-6)


def test_minibatch_std_by_hand():
    torch.manual_seed(0)
    x = torch.randn(8, 3, 2, 2)
    y = MinibatchStdLayer(group_size=4)(x)
    assert y.shape == (8, 4, 2, 2)
    groups = x.reshape(4, 2, 3, 2, 2)  # sample i belongs to group i % 2
    std = (groups.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=[1, 2, 3])
    assert torch.allclose(y[:, 3, 0, 0], std.repeat(4))
    small = MinibatchStdLayer(group_size=4)(x[:2])  # group = min(4, N)
    assert torch.allclose(small[:, 3, 0, 0], (x[:2].var(0, unbiased=False) + 1e-8).sqrt().mean())


# ----------------------------------------------------------------------------------------
# Architecture facts


@pytest.mark.parametrize("res", [16, 32, 64, 128, 256, 512, 1024])
def test_num_ws_and_channel_formula(res):
    with torch.device("meta"):
        G = Generator(img_resolution=res, channel_base=16384, channel_max=512)
        D = Discriminator(img_resolution=res, channel_base=16384, channel_max=512)
    assert G.num_ws == G.synthesis.num_ws == 2 * int(math.log2(res)) - 2
    sd, dsd = G.state_dict(), D.state_dict()
    for r in G.synthesis.block_resolutions:
        assert sd[f"synthesis.b{r}.conv1.weight"].shape[0] == min(16384 // r, 512)
        assert dsd.get(f"b{r}.conv0.weight", torch.empty(min(16384 // r, 512))).shape[0] == \
            min(16384 // r, 512)
    assert sd["synthesis.b4.const"].shape == (512, 4, 4)
    assert dsd[f"b{res}.fromrgb.weight"].shape == (min(16384 // res, 512), 3, 1, 1)
    assert dsd["b4.fc.weight"].shape == (512, 512 * 16)


def expected_generator_names(res, num_mapping=8):
    names = {"mapping.w_avg", "synthesis.b4.const", "synthesis.b4.resample_filter"}
    names |= {f"mapping.fc{i}.{p}" for i in range(num_mapping) for p in ("weight", "bias")}
    layer = ("weight", "bias", "affine.weight", "affine.bias", "noise_const", "noise_strength",
             "resample_filter")
    torgb = ("weight", "bias", "affine.weight", "affine.bias")
    for r in (2**i for i in range(2, int(math.log2(res)) + 1)):
        convs = ("conv1",) if r == 4 else ("conv0", "conv1")
        names |= {f"synthesis.b{r}.{c}.{p}" for c in convs for p in layer}
        names |= {f"synthesis.b{r}.torgb.{p}" for p in torgb} | {f"synthesis.b{r}.resample_filter"}
    return names


def expected_discriminator_names(res):
    conv = ("weight", "bias", "resample_filter")
    names = {f"b{res}.fromrgb.{p}" for p in conv}
    for r in (2**i for i in range(3, int(math.log2(res)) + 1)):
        names |= {f"b{r}.{c}.{p}" for c in ("conv0", "conv1") for p in conv}
        names |= {f"b{r}.skip.weight", f"b{r}.skip.resample_filter", f"b{r}.resample_filter"}
    return names | {f"b4.conv.{p}" for p in conv} | {f"b4.{l}.{p}" for l in ("fc", "out")
                                                      for p in ("weight", "bias")}


def test_official_parameter_and_buffer_names():
    G, D = tiny_g(), tiny_d()
    assert set(G.state_dict()) == expected_generator_names(32)
    assert set(D.state_dict()) == expected_discriminator_names(32)
    buffers = {name for name, _ in G.named_buffers()}
    assert {"mapping.w_avg", "synthesis.b8.conv0.noise_const", "synthesis.b8.resample_filter",
            "synthesis.b8.conv0.resample_filter"} <= buffers
    assert set(G.synthesis.noise_buffers()) == {n[len("synthesis."):] for n in buffers
                                                if n.endswith("noise_const")}


def test_flat_and_nested_kwargs_agree():
    flat = Generator(z_dim=32, w_dim=32, img_resolution=32, channel_base=512, channel_max=32,
                     num_layers=2)
    nested = Generator(32, 0, 32, 32, 3, mapping_kwargs=dict(num_layers=2),
                       synthesis_kwargs=dict(channel_base=512, channel_max=32))
    assert flat.init_kwargs == nested.init_kwargs
    assert Generator(**flat.init_kwargs).init_kwargs == flat.init_kwargs
    with pytest.raises(TypeError, match="channel_bse"):
        Generator(channel_bse=1)


# ----------------------------------------------------------------------------------------
# Behaviour


def test_mapping_truncation_and_w_avg_tracking():
    G = tiny_g()
    z = torch.randn(3, 32)
    w = G.mapping(z, truncation_psi=1.0)
    assert w.shape == (3, G.num_ws, 32)
    assert torch.allclose(G.mapping(z * 5.0), w, atol=1e-5)  # 2nd-moment normalisation
    w_avg = G.mapping.w_avg
    cut = G.mapping(z, truncation_psi=0.7, truncation_cutoff=4)
    assert torch.allclose(cut[:, :4], w_avg + 0.7 * (w[:, :4] - w_avg), atol=1e-6)
    assert torch.equal(cut[:, 4:], w[:, 4:])
    all_layers = G.mapping(z, truncation_psi=0.0)
    assert torch.allclose(all_layers, w_avg.expand_as(w))
    before = w_avg.clone()
    G.mapping(z, update_emas=True)
    assert torch.allclose(G.mapping.w_avg, w[:, 0].mean(0) + 0.995 * (before - w[:, 0].mean(0)),
                          atol=1e-6)


def test_generator_noise_modes_and_determinism():
    G = tiny_g()
    z = torch.randn(2, 32)
    with torch.no_grad():
        a = G(z, truncation_psi=1.0, noise_mode="const")
        b = G(z, truncation_psi=1.0, noise_mode="const")
        r1, r2 = G(z, noise_mode="random"), G(z, noise_mode="random")
        none = G(z, noise_mode="none")
    assert a.shape == (2, 3, 32, 32) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert not torch.equal(r1, r2) and not torch.equal(a, none)
    with pytest.raises(ValueError, match="noise_mode"):
        G(z, noise_mode="fixed")
    G.synthesis.noise_buffers()["b32.conv1.noise_const"].zero_()
    assert not torch.equal(G(z, noise_mode="const"), a)  # projectors write these buffers


def test_fused_and_unfused_modconv_agree():
    G = tiny_g()
    ws = torch.randn(3, G.num_ws, 32)
    with torch.no_grad():
        fused = G.synthesis(ws, noise_mode="const", fused_modconv=True)
        unfused = G.synthesis(ws, noise_mode="const", fused_modconv=False)
    assert torch.allclose(fused, unfused, atol=1e-5 * fused.abs().max())


def test_cpu_ignores_fp16_and_honours_conv_clamp():
    G16 = tiny_g(num_fp16_res=4)
    G32 = tiny_g(num_fp16_res=0)
    G32.load_state_dict(G16.state_dict())
    ws = torch.randn(2, G16.num_ws, 32) * 3
    img = G16.synthesis(ws, noise_mode="const")
    assert img.dtype == torch.float32
    assert torch.equal(img, G32.synthesis(ws, noise_mode="const"))
    clamped = tiny_g(conv_clamp=0.05)
    # each of the 4 ToRGB outputs is clamped and the [1,3,3,1] upsampling never overshoots
    assert clamped.synthesis(ws, noise_mode="const").abs().max() <= 4 * 0.05 + 1e-6


def test_gradients_reach_w_plus_only():
    G = tiny_g().requires_grad_(False)
    ws = torch.randn(2, G.num_ws, 32, requires_grad=True)
    G.synthesis(ws, noise_mode="const").square().mean().backward()
    assert ws.grad is not None and torch.isfinite(ws.grad).all() and ws.grad.abs().sum() > 0


def test_discriminator_shapes_and_conditioning():
    D = tiny_d()
    img = torch.randn(4, 3, 32, 32)
    assert D(img).shape == (4, 1)
    G = tiny_g(c_dim=5)
    Dc = tiny_d(c_dim=5)
    c = torch.eye(5)[:4]
    assert Dc(G(torch.randn(4, 32), c), c).shape == (4, 1)
    with pytest.raises(ValueError, match="conditional"):
        G(torch.randn(4, 32))
    with pytest.raises(ValueError, match="discriminator input"):
        D(torch.randn(4, 3, 16, 16))


# ----------------------------------------------------------------------------------------
# Official-format pickles, written without NVIDIA's code


@contextlib.contextmanager
def official_module_names():
    """Make `torch_utils.persistence` and `dnnlib.util.EasyDict` resolvable while pickling."""
    persistence = types.ModuleType("torch_utils.persistence")
    util = types.ModuleType("dnnlib.util")

    def _reconstruct_persistent_obj(meta):
        raise AssertionError("the loader must not call back into torch_utils")

    _reconstruct_persistent_obj.__module__ = persistence.__name__
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj
    util.EasyDict = type("EasyDict", (dict,), {"__module__": util.__name__})
    fake = {"torch_utils": types.ModuleType("torch_utils"), "torch_utils.persistence": persistence,
            "dnnlib": types.ModuleType("dnnlib"), "dnnlib.util": util}
    saved = {name: sys.modules.get(name) for name in fake}
    sys.modules.update(fake)
    try:
        yield util.EasyDict
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name)
            else:
                sys.modules[name] = module


class Record:
    """Pickles as an official persistent object: _reconstruct_persistent_obj(meta)."""

    def __init__(self, class_name, state, module_src):
        self.meta = dict(type="class", version=6, module_src=module_src, class_name=class_name,
                         state=state)

    def __reduce__(self):
        return sys.modules["torch_utils.persistence"]._reconstruct_persistent_obj, (self.meta,)


def to_record(module, module_src, easydict, init_kwargs=None, class_name=None):
    """The state official pickles carry: the module __dict__ with children as records."""
    hooks = ("_backward_hooks", "_forward_hooks", "_forward_pre_hooks", "_state_dict_hooks",
             "_load_state_dict_pre_hooks")
    state = {k: v for k, v in vars(module).items() if isinstance(v, (bool, int, float, str))}
    state.update({h: OrderedDict() for h in hooks})
    state.update(training=False, _parameters=OrderedDict(module._parameters),
                 _buffers=OrderedDict(module._buffers), _non_persistent_buffers_set=set(),
                 _init_args=(), _init_kwargs=easydict(init_kwargs or {}))
    state["_modules"] = OrderedDict((name, to_record(child, module_src, easydict))
                                    for name, child in module._modules.items())
    if "weight_gain" in state:
        state["weight_gain"] = np.float64(state["weight_gain"])  # official stores numpy floats
    return Record(class_name or type(module).__name__, state, module_src)


def nested_easydicts(kwargs, easydict):
    return easydict({k: nested_easydicts(v, easydict) if isinstance(v, dict) else v
                     for k, v in kwargs.items()})


def write_official_pickle(path, nets, marker, edit=None, protocol=4):
    """Official snapshot layout; `edit(data)` may tamper with the records before dumping."""
    module_src = f"open({str(marker)!r}, 'w').write('embedded source was executed')\n"
    with official_module_names() as easydict:
        data = {name: to_record(net, module_src, easydict,
                                nested_easydicts(net.init_kwargs, easydict))
                for name, net in nets.items()}
        data.update(augment_pipe=None, training_set_kwargs=dict(resolution=32, xflip=False))
        if edit is not None:
            edit(data)
        path.write_bytes(pickle.dumps(data, protocol=protocol))
    return path


@pytest.fixture
def marker(tmp_path):
    yield tmp_path / "MARKER"
    assert not (tmp_path / "MARKER").exists(), "code from the checkpoint was executed"


@pytest.mark.parametrize("protocol", [3, 4])
def test_official_pickle_round_trip(tmp_path, marker, protocol):
    G, D = tiny_g(1), tiny_d(2)
    G_ema = tiny_g(3)
    path = write_official_pickle(tmp_path / "snapshot.pkl", dict(G=G, D=D, G_ema=G_ema), marker,
                                 protocol=protocol)
    nets = load_network(path)
    assert set(nets) == {"G", "D", "G_ema"}
    assert not any(m.startswith(("torch_utils", "dnnlib")) for m in sys.modules)
    for name, original in dict(G=G, D=D, G_ema=G_ema).items():
        loaded = nets[name]
        assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
        assert loaded.init_kwargs == original.init_kwargs
        for key, value in original.state_dict().items():
            assert torch.equal(loaded.state_dict()[key], value), key
    z, ws = torch.randn(2, 32), torch.randn(2, G.num_ws, 32)
    with torch.no_grad():
        assert torch.equal(nets["G_ema"](z, truncation_psi=0.5, noise_mode="const"),
                           G_ema(z, truncation_psi=0.5, noise_mode="const"))
        assert torch.equal(nets["G"].synthesis(ws, noise_mode="const"),
                           G.synthesis(ws, noise_mode="const"))
        img = torch.randn(2, 3, 32, 32)
        assert torch.equal(nets["D"](img), D(img))
    assert load_extra(path)["training_set_kwargs"] == dict(resolution=32, xflip=False)
    assert load_network(path, requires_grad=True)["G"].synthesis.b4.const.requires_grad


def test_official_pickle_state_mismatch_is_named(tmp_path, marker):
    def drop_and_add(data):
        block = data["G"].meta["state"]["_modules"]["synthesis"].meta["state"]["_modules"]["b8"]
        block.meta["state"]["_modules"]["conv0"].meta["state"]["_buffers"].pop("noise_const")
        data["G"].meta["state"]["_parameters"]["surprise"] = torch.nn.Parameter(torch.ones(1))

    path = write_official_pickle(tmp_path / "bad.pkl", dict(G=tiny_g()), marker, drop_and_add)
    with pytest.raises(CheckpointFormatError) as err:
        load_network(path)
    message = str(err.value)
    assert str(path) in message
    assert "synthesis.b8.conv0.noise_const" in message and "surprise" in message


@pytest.mark.parametrize("edit,match", [
    (lambda d: d["G"].meta.update(class_name="StyleGAN3Generator"), "StyleGAN3Generator"),
    (lambda d: d["G"].meta["state"]["_modules"]["synthesis"].meta.update(
        class_name="SynthesisInput"), "SynthesisInput"),
    (lambda d: d["G"].meta["state"]["_init_kwargs"]["synthesis_kwargs"].update(
        architecture="orig"), "architecture"),
    (lambda d: [d.pop(k) for k in ("G", "D", "G_ema") if k in d], "no networks"),
])
def test_official_pickle_of_another_architecture(tmp_path, marker, edit, match):
    path = write_official_pickle(tmp_path / "other.pkl", dict(G=tiny_g()), marker, edit)
    with pytest.raises(CheckpointFormatError, match=match):
        load_network(path)


class Payload:
    """A pickle that would run `call(*args)` on load (callable so that it can be nested)."""

    def __init__(self, call, args):
        self.call, self.args = call, args

    def __reduce__(self):
        return self.call, self.args

    def __call__(self, *args):
        raise AssertionError("only ever pickled")


def payloads(marker):
    code = f"open({str(marker)!r}, 'w').write('pwned')"
    os_system = Payload(builtins.getattr, (Payload(builtins.__import__, ("os",)), "system"))
    return {
        "os.system": Payload(os.system, (f"touch {marker}",)),
        "subprocess.Popen": Payload(subprocess.Popen, (["touch", str(marker)],)),
        "eval": Payload(eval, (code,)),
        "exec": Payload(exec, (code,)),
        "builtins.getattr": Payload(os_system, (f"touch {marker}",)),
    }


def test_payloads_are_live_under_plain_pickle(tmp_path):
    """Guards the tests below: these payloads do run when loaded without restrictions."""
    pickle.loads(pickle.dumps(payloads(tmp_path / "ran")["exec"]))
    assert (tmp_path / "ran").exists()


@pytest.mark.parametrize("name", ["os.system", "subprocess.Popen", "eval", "exec",
                                  "builtins.getattr"])
def test_unsafe_pickles_are_refused_without_running(tmp_path, marker, name):
    payload = payloads(marker)[name]
    top = tmp_path / "top.pkl"
    top.write_bytes(pickle.dumps({"G": payload}))
    nested = write_official_pickle(tmp_path / "nested.pkl", dict(G=tiny_g()), marker,
                                   lambda d: d["training_set_kwargs"].update(evil=payload))
    for path in (top, nested):
        with pytest.raises(UnsafeCheckpointError, match=re.escape(str(path))):
            load_network(path)


def test_unsafe_torch_file_is_refused_without_running(tmp_path, marker):
    path = tmp_path / "evil.pt"
    torch.save({"g_ema": payloads(marker)["os.system"]}, path)
    with pytest.raises(UnsafeCheckpointError, match="evil.pt"):
        load_network(path)


def test_corrupt_files_are_format_errors(tmp_path, marker):
    good = write_official_pickle(tmp_path / "good.pkl", dict(G=tiny_g()), marker).read_bytes()
    ours = tmp_path / "ours.safetensors"
    save_network(ours, dict(G=tiny_g()))
    rosinality = tmp_path / "ros.pt"
    torch.save({"g_ema": {"style.1.weight": torch.ones(2, 2)}}, rosinality)
    cases = {
        "truncated.pkl": good[: len(good) // 2],
        "truncated.safetensors": ours.read_bytes()[:-100],
        "truncated.pt": rosinality.read_bytes()[:200],
        "random.bin": np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        "empty.pkl": b"",
        "list.pkl": pickle.dumps([1, 2, 3]),
        "text.pkl": b"just some text, not a checkpoint\n",
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(CheckpointFormatError, match=re.escape(name)):
            load_network(tmp_path / name)
    with pytest.raises(CheckpointFormatError, match="ros.pt"):
        load_network(rosinality)  # a generator state dict with most tensors missing


# ----------------------------------------------------------------------------------------
# rosinality checkpoints and our own format


def to_rosinality_generator(state):
    """Inverse name mapping (as in NVIDIA-to-rosinality exporters), with blur kernels."""
    ros = {}
    kernel = torch.outer(torch.tensor([1., 3, 3, 1]), torch.tensor([1., 3, 3, 1])) / 16
    for key, value in state.items():
        if m := re.fullmatch(r"mapping\.fc(\d+)\.(weight|bias)", key):
            ros[f"style.{int(m[1]) + 1}.{m[2]}"] = value
        elif key == "synthesis.b4.const":
            ros["input.input"] = value[None]
        elif m := re.fullmatch(r"synthesis\.b(\d+)\.(conv0|conv1|torgb)\.(.+)", key):
            res, layer, param = int(m[1]), m[2], m[3]
            level = int(math.log2(res)) - 3
            if layer == "torgb":
                prefix = "to_rgb1" if res == 4 else f"to_rgbs.{level}"
                if res > 4:
                    ros[f"{prefix}.upsample.kernel"] = kernel
            else:
                prefix = "conv1" if res == 4 else f"convs.{2 * level + (layer == 'conv1')}"
                if layer == "conv0":
                    ros[f"{prefix}.conv.blur.kernel"] = kernel
            noise = 0 if res == 4 else 2 * level + 1 + (layer == "conv1")
            bias = (f"{prefix}.bias", (1, -1, 1, 1)) if layer == "torgb" else \
                (f"{prefix}.activate.bias", (-1,))
            name, shape = {"weight": (f"{prefix}.conv.weight", (1, *value.shape)),
                           "affine.weight": (f"{prefix}.conv.modulation.weight", value.shape),
                           "affine.bias": (f"{prefix}.conv.modulation.bias", value.shape),
                           "bias": bias,
                           "noise_strength": (f"{prefix}.noise.weight", (1,)),
                           "noise_const": (f"noises.noise_{noise}", (1, 1, *value.shape)),
                           "resample_filter": (None, None)}[param]
            if name:
                ros[name] = value.reshape(shape)
    return ros


def to_rosinality_discriminator(state, res):
    ros = {}
    kernel = torch.outer(torch.tensor([1., 3, 3, 1]), torch.tensor([1., 3, 3, 1])) / 64
    fixed = {f"b{res}.fromrgb.weight": "convs.0.0.weight", f"b{res}.fromrgb.bias": "convs.0.1.bias",
             "b4.conv.weight": "final_conv.0.weight", "b4.conv.bias": "final_conv.1.bias",
             "b4.fc.weight": "final_linear.0.weight", "b4.fc.bias": "final_linear.0.bias",
             "b4.out.weight": "final_linear.1.weight", "b4.out.bias": "final_linear.1.bias"}
    for key, value in state.items():
        if key in fixed:
            ros[fixed[key]] = value
        elif m := re.fullmatch(r"b(\d+)\.(conv0|conv1|skip)\.(weight|bias)", key):
            i = int(math.log2(res)) - int(math.log2(int(m[1]))) + 1
            name = {("conv0", "weight"): "conv1.0.weight", ("conv0", "bias"): "conv1.1.bias",
                    ("conv1", "weight"): "conv2.1.weight", ("conv1", "bias"): "conv2.2.bias",
                    ("skip", "weight"): "skip.1.weight"}[(m[2], m[3])]
            ros[f"convs.{i}.{name}"] = value
            ros[f"convs.{i}.conv2.0.kernel"] = ros[f"convs.{i}.skip.0.kernel"] = kernel
    return ros


def test_rosinality_checkpoint_round_trip(tmp_path):
    G, D = tiny_g(4), tiny_d(5)
    path = tmp_path / "rosinality.pt"
    torch.save({"g_ema": to_rosinality_generator(G.state_dict()),
                "d": to_rosinality_discriminator(D.state_dict(), 32),
                "latent_avg": G.mapping.w_avg[None].clone()}, path)
    nets = load_network(path)
    assert set(nets) == {"G_ema", "D"}
    assert nets["G_ema"].init_kwargs["synthesis_kwargs"] == dict(channel_base=512, channel_max=32)
    for key, value in G.state_dict().items():
        assert torch.equal(nets["G_ema"].state_dict()[key], value), key
    z, img = torch.randn(2, 32), torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(nets["G_ema"](z, truncation_psi=0.7, noise_mode="const"),
                           G(z, truncation_psi=0.7, noise_mode="const"))
        assert torch.equal(nets["D"](img), D(img))

    extra = to_rosinality_generator(G.state_dict())
    extra["convs.99.conv.weight"] = torch.ones(1)
    torch.save({"g_ema": extra}, path)
    with pytest.raises(CheckpointFormatError, match=r"convs\.99"):
        load_network(path)


def test_save_network_round_trip(tmp_path):
    G, D = tiny_g(6, c_dim=2), tiny_d(7, c_dim=2)
    path = tmp_path / "finetuned.safetensors"
    save_network(path, dict(G_ema=G, D=D), extra=dict(step=1200, note="pilot",
                                                      w_mean=torch.arange(3.0)))
    assert not (tmp_path / "finetuned.safetensors.part").exists()
    nets = load_network(path)
    assert set(nets) == {"G_ema", "D"}
    assert nets["G_ema"].init_kwargs == G.init_kwargs
    z, c = torch.randn(2, 32), torch.eye(2)
    with torch.no_grad():
        img = nets["G_ema"](z, c, noise_mode="const")
        assert torch.equal(img, G(z, c, noise_mode="const"))
        assert torch.equal(nets["D"](img, c), D(img, c))
    extra = load_extra(path)
    assert extra["step"] == 1200 and extra["note"] == "pilot"
    assert torch.equal(extra["w_mean"], torch.arange(3.0))


def test_save_network_accepts_one_module_under_two_names(tmp_path):
    G = tiny_g(6)  # e.g. a snapshot taken before G_ema has diverged from G
    save_network(tmp_path / "same.safetensors", dict(G=G, G_ema=G))
    nets = load_network(tmp_path / "same.safetensors")
    for name in ("G", "G_ema"):
        assert all(torch.equal(a, b) for a, b in zip(nets[name].state_dict().values(),
                                                     G.state_dict().values()))
