"""Native pSp / e4e encoders: the official checkpoint layout, strict weights-only loading, the
official forward (latent_avg, e4e's w0 + deltas), and the Fig. 7 wiring in ``inversion``.

Checkpoints here are synthetic: tiny-width encoders and a 32 px generator in rosinality's
naming, saved with the official layout {'state_dict': {'encoder.*', 'decoder.*'},
'latent_avg', 'opts'}."""

from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from drfhq_lib.nets import encoders
from drfhq_lib.infer import enhance
from drfhq_lib.eval import inversion_runs
from drfhq_lib.infer.enhance import Networks
from drfhq_lib.errors import CheckpointFormatError, DrfhqError, UnsafeCheckpointError
from drfhq_lib.data.images import load_image, tensor_to_pil
from drfhq_lib.nets.perceptual import resize
from drfhq_lib.infer.projection import ProjectionParams, render
from test_networks import tiny_g, to_rosinality_generator

TINY_STAGES = ((16, 16, 1), (16, 32, 2), (32, 48, 1), (48, 64, 1))  # 4 stages, SE needs >= 16
NUM_WS, W_DIM = 8, 32  # the 32 px tiny generator's W+
TYPES = {"psp": "GradualStyleEncoder", "e4e": "Encoder4Editing"}


def tiny_encoder(kind, seed=0):
    torch.manual_seed(seed)
    enc = encoders.ENCODER_CLASSES[kind](NUM_WS, W_DIM, TINY_STAGES)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # non-trivial BatchNorm statistics and biases, so every tensor counts
        for name, tensor in enc.state_dict().items():
            if name.endswith(("running_mean", "bias")):
                tensor.add_(torch.randn(tensor.shape, generator=gen) * 0.1)
            elif name.endswith("running_var"):
                tensor.mul_(torch.rand(tensor.shape, generator=gen) + 0.5)
    return enc.eval()


def save_checkpoint(path, enc, G, opts=None, latent_avg=None, drop=()):
    state = {**{f"encoder.{k}": v for k, v in enc.state_dict().items()},
             **{f"decoder.{k}": v for k, v in to_rosinality_generator(G.state_dict()).items()}}
    data = {"state_dict": {k: v for k, v in state.items() if k not in drop},
            "opts": {"encoder_type": TYPES[enc.kind], "start_from_latent_avg": True,
                     "dataset_type": "ffhq_encode", **(opts or {})}}
    if latent_avg is not None:
        data["latent_avg"] = latent_avg
    torch.save(data, path)
    return path


@pytest.fixture(scope="module")
def G():
    return tiny_g(3)


@pytest.fixture(scope="module")
def latent_avg():
    return torch.randn(NUM_WS, W_DIM, generator=torch.Generator().manual_seed(5))


@pytest.fixture(scope="module")
def face():
    return encoders.encoder_input(load_image(enhance.SAMPLES / "kenji_portrait.png"))


# ----------------------------------------------------------------------------- official layout

def test_default_encoder_has_the_official_ir_se50_key_set():
    """Expected from the official GradualStyleEncoder(50, 'ir_se'): 24 IR-SE units (15 tensors
    each, 6 more for the 3 with a conv shortcut), 18 heads with 4/5/6 stride-2 convs (3/4/11
    heads) + a linear, two 1x1 lateral convs."""
    with torch.device("meta"):  # ~230M parameters: shapes only
        psp, e4e = encoders.GradualStyleEncoder(), encoders.Encoder4Editing()
    state = psp.state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == \
        {k: tuple(v.shape) for k, v in e4e.state_dict().items()}
    assert Counter(k.split(".")[0] for k in state) == {
        "input_layer": 7, "body": 24 * 15 + 3 * 6, "styles": 2 * (3 * 4 + 4 * 5 + 11 * 6) + 18 * 2,
        "latlayer1": 2, "latlayer2": 2}
    shortcuts = sorted({int(k.split(".")[1]) for k in state if ".shortcut_layer." in k})
    assert shortcuts == [3, 7, 21]  # first unit of stages 2-4; stage 1 keeps 64 channels
    convs = Counter(k.split(".")[1] for k in state if k.startswith("styles.") and "convs" in k)
    assert [convs[str(i)] // 2 for i in range(18)] == [4] * 3 + [5] * 4 + [6] * 11
    shapes = {"input_layer.0.weight": (64, 3, 3, 3), "input_layer.2.weight": (64,),
              "body.0.res_layer.1.weight": (64, 64, 3, 3),
              "body.3.shortcut_layer.0.weight": (128, 64, 1, 1),
              "body.23.res_layer.5.fc1.weight": (32, 512, 1, 1),
              "body.23.res_layer.5.fc2.weight": (512, 32, 1, 1),
              "styles.0.convs.0.weight": (512, 512, 3, 3), "styles.17.convs.10.bias": (512,),
              "styles.9.linear.weight": (512, 512), "latlayer1.weight": (512, 256, 1, 1),
              "latlayer2.weight": (512, 128, 1, 1)}
    assert {k: tuple(state[k].shape) for k in shapes} == shapes
    assert psp.taps == (6, 20, 23)  # c1, c2, c3 of the official forward


def test_fpn_merge_and_se_gate_follow_the_official_numerics():
    """upsample_add: bilinear with align_corners=True (corners kept exactly); SE: x * sigmoid
    of the gate, 0.5 everywhere when the last 1x1 conv is zero."""
    x = torch.arange(4.0).reshape(1, 1, 2, 2)
    merged = encoders.upsample_add(x, torch.zeros(1, 1, 4, 4))
    assert merged[0, 0, ::3, ::3].tolist() == x[0, 0].tolist()
    assert merged[0, 0, 0].tolist() == pytest.approx([0, 1 / 3, 2 / 3, 1])
    se = encoders.SEModule(16)
    torch.nn.init.zeros_(se.fc2.weight)
    features = torch.randn(2, 16, 3, 3)
    assert torch.equal(se(features), features * 0.5)


# ----------------------------------------------------------------------------- loading

@pytest.mark.parametrize("kind", ["psp", "e4e"])
def test_checkpoint_round_trip_is_strict_and_exact(kind, G, latent_avg, face, tmp_path):
    enc = tiny_encoder(kind, seed=1)
    path = save_checkpoint(tmp_path / f"{kind}.pt", enc, G, latent_avg=latent_avg)
    net = encoders.load_encoder(path)
    assert net.kind == kind and type(net.encoder) is type(enc)
    for key, value in enc.state_dict().items():
        assert torch.equal(net.encoder.state_dict()[key], value), key
    for key, value in G.state_dict().items():
        if key != "mapping.w_avg":  # becomes latent_avg, the decoder's truncation centre
            assert torch.equal(net.decoder.state_dict()[key], value), key
    assert torch.equal(net.decoder.mapping.w_avg, latent_avg[0])
    images = torch.cat([face, face.flip(-1)])
    ws = net.ws(images)
    assert ws.shape == (2, NUM_WS, W_DIM)
    with torch.no_grad():
        assert torch.allclose(ws, enc(images) + latent_avg, atol=1e-6)
        assert not torch.allclose(ws[0], ws[1])
        assert render(net.decoder, ws).shape == (2, 3, 32, 32)


@pytest.mark.parametrize("kind", ["psp", "e4e"])
def test_latent_avg_is_added_as_the_official_forward_does(kind, G, latent_avg, face, tmp_path):
    enc = tiny_encoder(kind)
    with torch.no_grad():  # every head outputs 0
        for head in enc.styles:
            head.linear.weight.zero_()
            head.linear.bias.zero_()
    net = encoders.load_encoder(save_checkpoint(tmp_path / "a.pt", enc, G, latent_avg=latent_avg))
    assert torch.equal(net.ws(face)[0], latent_avg)
    one_row = save_checkpoint(tmp_path / "b.pt", enc, G, latent_avg=latent_avg[:1])  # [1, 512]
    assert torch.equal(encoders.load_encoder(one_row).ws(face)[0],
                       latent_avg[:1].expand(NUM_WS, -1))
    off = save_checkpoint(tmp_path / "c.pt", enc, G, {"start_from_latent_avg": False},
                          latent_avg=latent_avg)
    net = encoders.load_encoder(off)
    assert net.latent_avg is None and torch.equal(net.ws(face), torch.zeros(1, NUM_WS, W_DIM))


def test_e4e_rows_are_w0_plus_their_heads_delta(face):
    psp, e4e = tiny_encoder("psp", seed=2), encoders.Encoder4Editing(NUM_WS, W_DIM, TINY_STAGES)
    e4e.load_state_dict(psp.state_dict())
    with torch.no_grad():
        codes, ws = psp(face), e4e.eval()(face)
    assert torch.equal(ws[:, 0], codes[:, 0])
    assert torch.equal(ws[:, 1:], codes[:, :1] + codes[:, 1:])


class _Payload:
    """Pickles as a call to open(marker, 'w'): loading it would create the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_checkpoint_with_a_pickled_object_is_refused_unrun(G, tmp_path):
    marker = tmp_path / "ran"
    path = save_checkpoint(tmp_path / "evil.pt", tiny_encoder("e4e"), G)
    data = torch.load(path, weights_only=True)
    torch.save({**data, "opts": _Payload(marker)}, path)
    with pytest.raises(UnsafeCheckpointError, match="evil.pt"):
        encoders.load_encoder(path)
    assert not marker.exists()


def test_bad_checkpoints_are_named_with_what_is_wrong(G, latent_avg, tmp_path):
    enc = tiny_encoder("psp")
    drop = save_checkpoint(tmp_path / "drop.pt", enc, G, latent_avg=latent_avg,
                           drop={"encoder.styles.3.linear.bias"})
    with pytest.raises(CheckpointFormatError, match=r"drop\.pt.*styles\.3\.linear\.bias"):
        encoders.load_encoder(drop)
    no_dec = save_checkpoint(tmp_path / "nodec.pt", enc, G, latent_avg=latent_avg,
                             drop={"decoder.to_rgb1.bias"})
    with pytest.raises(CheckpointFormatError, match=r"nodec\.pt: decoder.*to_rgb1\.bias"):
        encoders.load_encoder(no_dec)
    good = save_checkpoint(tmp_path / "psp.pt", enc, G, latent_avg=latent_avg)
    with pytest.raises(CheckpointFormatError, match="e4e_ffhq_encode.pt"):
        encoders.load_encoder(good, kind="e4e")  # a pSp file given as e4e
    (tmp_path / "cut.pt").write_bytes(good.read_bytes()[:300])
    with pytest.raises(CheckpointFormatError, match=r"cut\.pt: not a readable torch file"):
        encoders.load_encoder(tmp_path / "cut.pt")
    torch.save({"g_ema": {}}, tmp_path / "gan.pt")
    with pytest.raises(CheckpointFormatError, match=r"gan\.pt: not a pSp/e4e checkpoint"):
        encoders.load_encoder(tmp_path / "gan.pt")
    other = save_checkpoint(tmp_path / "w.pt", enc, G, {"encoder_type": "SingleStyleCodeEncoder"})
    with pytest.raises(CheckpointFormatError, match="SingleStyleCodeEncoder.*not supported"):
        encoders.load_encoder(other)
    with pytest.raises(DrfhqError, match="no such checkpoint"):
        encoders.load_encoder(tmp_path / "absent.pt")


# ----------------------------------------------------------------------------- Fig. 7 wiring

def test_inversion_runs_e4e_natively_from_its_checkpoint(G, latent_avg, tmp_path):
    path = save_checkpoint(tmp_path / "e4e.pt", tiny_encoder("e4e", seed=4), G,
                           latent_avg=latent_avg)
    real = enhance.untrained_generator(32, "cpu", seed=0)
    nets = Networks(real, real, "untrained real", "untrained rendering", False, [])
    out = tmp_path / "out"
    portrait = enhance.SAMPLES / "kenji_portrait.png"
    run = inversion_runs.run_methods([portrait], ["e4e", "psp"], out, nets, ProjectionParams(steps=1),
                                size=32, prefer="substitute", progress=False,
                                checkpoints={"e4e": path})
    rows = {r["method"]: r for r in run.rows}
    assert rows["e4e"]["status"] == "ok" and "e4e.pt" in rows["e4e"]["reason"]
    assert rows["psp"]["status"] == "not run" and "psp_ffhq_encode.pt" in rows["psp"]["reason"]
    assert float(rows["e4e"]["lpips"]) >= 0
    net = encoders.load_encoder(path)
    ws = net.ws(encoders.encoder_input(load_image(out / "aligned" / "kenji_portrait.png")))
    saved = inversion_runs.read_external_latent(out / "e4e" / "kenji_portrait.npz")
    assert torch.allclose(saved, ws[0])
    expected = np.asarray(tensor_to_pil(resize(render(net.decoder, ws), 32))[0], np.int16)
    result = np.asarray(Image.open(out / "e4e" / "kenji_portrait.png"), np.int16)
    assert np.abs(result - expected).max() <= 1
    assert any(r.name == "e4e-encoder" for r in run.networks)
    with pytest.raises(DrfhqError, match="hyperstyle"):
        inversion_runs.run_methods([portrait], ["hyperstyle"], out, nets, size=32,
                              prefer="substitute", progress=False,
                              checkpoints={"hyperstyle": path})
