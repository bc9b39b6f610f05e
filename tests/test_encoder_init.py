"""Encoders trained here (``drfhq encoder train``) and the projection started from them.

Oracles: closed forms of the layout (each head halves its map down to 1x1), an uninterrupted
run for the resumed one, the generator's own samples for the latent targets, and, on the
mini world, the LPIPS network scoring two starts of the same projector on held-out renders
(identities of seed 2, never seen in training)."""

import json
import pytest
import torch

from drfhq_lib import cli
from drfhq_lib.errors import CheckpointFormatError, DrfhqError
from drfhq_lib.infer import encoder_init, encoder_job
from drfhq_lib.infer.encoder_training import EncoderTrainConfig, EncoderTrainer, sample_targets
from drfhq_lib.infer.projection import ProjectionParams, project, render, w_statistics
from drfhq_lib.nets import encoders, save_network
from drfhq_lib.nets.weights import Resolved
from test_miniworld_method import heldout  # noqa: F401 (fixture: 6 held-out ids, seed 2)
from test_networks import tiny_g

TINY_STAGES = ((16, 16, 1), (16, 24, 1), (24, 32, 1), (32, 48, 1))  # widths change per stage


def tiny_config(**kw):
    return EncoderTrainConfig(**{"stages": TINY_STAGES, "head_channels": 16, "batch": 4,
                                 "kimg": 0.016, "lpips_weight": 0.0, **kw})


@pytest.fixture(scope="module")
def G():
    return tiny_g(3)  # 32 px, W+ 8 x 32


# ----------------------------------------------------------------------------- layout and files

def test_a_64px_encoder_has_heads_that_end_at_1x1():
    enc = encoders.Encoder4Editing(10, 256, TINY_STAGES, input_size=64, head_channels=24)
    # the coarse heads read the 4x4 end of stage 4, middle 8x8, fine 16x16: log2 of it convs
    convs = [sum(isinstance(m, torch.nn.Conv2d) for m in head.convs) for head in enc.styles]
    assert convs == [2] * 3 + [3] * 4 + [4] * 3
    assert enc.styles[0].linear.weight.shape == (256, 24)
    out = enc.eval()(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 10, 256)
    layout = encoders.encoder_layout("x", enc.state_dict())
    assert layout == {"num_ws": 10, "w_dim": 256, "stages": TINY_STAGES, "input_size": 64,
                      "head_channels": 24}
    with pytest.raises(ValueError, match="power of two"):
        encoders.Encoder4Editing(10, 256, TINY_STAGES, input_size=48)


def test_trained_encoder_file_round_trip_fp16_and_refusals(tmp_path, G):
    enc = encoders.GradualStyleEncoder(G.num_ws, G.w_dim, TINY_STAGES, 32, 16).eval()
    norm = next(m for m in enc.modules() if isinstance(m, torch.nn.BatchNorm2d))
    norm.running_var[0] = 7e4  # past fp16's largest finite value (65504)
    avg = torch.randn(G.num_ws, G.w_dim)
    record = {"label": "tiny", "sha256": "ab" * 32, "num_ws": G.num_ws, "w_dim": G.w_dim}
    full = encoders.save_trained_encoder(tmp_path / "e.safetensors", enc, avg, record, {"k": 1})
    half = encoders.save_trained_encoder(tmp_path / "h.safetensors", enc, avg, record, half=True)
    x = torch.rand(3, 3, 64, 64) * 2 - 1  # read at any size: area-resized to 32 px
    with torch.no_grad():
        expected = enc(torch.nn.functional.interpolate(x, size=32, mode="area")) + avg
    a, b = encoders.load_trained_encoder(full), encoders.load_trained_encoder(half)
    assert a.kind == "psp" and a.generator == record and a.extra == {"k": 1}
    assert torch.equal(a.ws(x), expected)
    # fp16 keeps 11 significant bits: relative error of a few 1e-3 through a small network
    assert (b.ws(x) - expected).abs().max() < 1e-2 * expected.abs().max()
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded = next(m for m in b.encoder.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert loaded.running_var[0] == 7e4  # statistics kept in fp32
    save_network(tmp_path / "g.safetensors", {"G": G})
    with pytest.raises(CheckpointFormatError, match="g.safetensors.*not a drfhq encoder"):
        encoders.load_trained_encoder(tmp_path / "g.safetensors")
    with pytest.raises(DrfhqError, match=r"e.safetensors.*\(8, 32\).*takes \(10, 256\)"):
        encoder_init.compatibility_notes(a, type("G", (), {"num_ws": 10, "w_dim": 256}))
    other = encoder_init.compatibility_notes(a, G, "cd" * 32)
    assert len(other) == 1 and "trained for tiny" in other[0]


# ----------------------------------------------------------------------------- training

def test_samples_carry_their_true_w_plus(G):
    images, ws = sample_targets(G, 6, torch.Generator().manual_seed(0), 1.0, torch.device("cpu"))
    with torch.no_grad():
        assert torch.allclose(images, G.synthesis(ws, noise_mode="const"), atol=1e-6)
    # every sample is mixed at some layer: two w's, rows from the cut on equal to the second
    changes = [(w[1:] != w[:-1]).any(1).nonzero().flatten().tolist() for w in ws]
    assert all(len(c) == 1 for c in changes)


def test_a_resumed_run_takes_the_steps_of_an_uninterrupted_one(tmp_path, G, monkeypatch):
    cfg = tiny_config(kimg=0.024)  # 6 steps; snapshots every 2
    gen_record = {"label": "tiny", "sha256": "ab" * 32}
    nets = [Resolved("tiny", "official", "tiny", None, "ab" * 32)]
    straight = encoder_job.train_encoder(G, tmp_path / "a", cfg, gen_record, nets,
                                         snapshot_kimg=0.008, progress=False)
    calls = {"n": 0}
    step = EncoderTrainer.step

    def interrupted(self):
        calls["n"] += 1
        if calls["n"] == 4:  # after the snapshot at step 2, in the middle of the next interval
            raise KeyboardInterrupt
        return step(self)
    monkeypatch.setattr(EncoderTrainer, "step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        encoder_job.train_encoder(G, tmp_path / "b", cfg, gen_record, nets,
                                  snapshot_kimg=0.008, progress=False)
    assert not (tmp_path / "b" / encoder_job.FINAL).exists()
    monkeypatch.setattr(EncoderTrainer, "step", step)
    resumed = encoder_job.train_encoder(G, tmp_path / "b", cfg, gen_record, nets,
                                        snapshot_kimg=0.008, progress=False)
    a, b = encoders.load_trained_encoder(straight), encoders.load_trained_encoder(resumed)
    for (name, x), y in zip(a.encoder.state_dict().items(), b.encoder.state_dict().values()):
        assert torch.equal(x, y), name
    with pytest.raises(DrfhqError, match="other settings.*lr"):
        encoder_job.train_encoder(G, tmp_path / "b", tiny_config(kimg=0.024, lr=0.5),
                                  gen_record, nets, progress=False)


def _faces(G, folder, count, seed):
    """``count`` generator samples saved as PNG "real" aligned faces in ``folder``."""
    from drfhq_lib.data.images import tensor_to_pil

    folder.mkdir(parents=True, exist_ok=True)
    images, _ = sample_targets(G, count, torch.Generator().manual_seed(seed), 0.0,
                               torch.device("cpu"))
    for i, image in enumerate(tensor_to_pil(images.clamp(-1, 1))):
        image.save(folder / f"{seed}-{i}.png")
    return sorted(folder.glob("*.png"))


class MeanAbs(torch.nn.Module):
    """A stand-in perceptual distance with a closed form: mean |a - b| per image."""

    def forward(self, a, b):
        return (a - b).abs().mean((1, 2, 3))


def test_held_out_real_inputs_are_scored_and_a_changed_input_set_is_logged(tmp_path, G,
                                                                           monkeypatch):
    from drfhq_lib.data.images import load_image, pil_to_tensor
    from drfhq_lib.infer import encoder_training

    monkeypatch.setattr(encoder_training, "CALIBRATION_MIN_IMAGES", 2)  # calibrate on these 2

    real = _faces(G, tmp_path / "real", 2, 7)
    val = _faces(G, tmp_path / "val", 3, 8)
    cfg = tiny_config(kimg=0.008, real_every=1, real_batch=2)
    gen_record = {"label": "tiny", "sha256": "ab" * 32}
    nets = [Resolved("tiny", "official", "tiny", None, "ab" * 32)]
    final = encoder_job.train_encoder(G, tmp_path / "run", cfg, gen_record, nets,
                                      lpips=MeanAbs(), real_paths=real, val_paths=val,
                                      progress=False)
    # oracle: the saved encoder, read back, scoring the validation files read back
    images = torch.cat([pil_to_tensor(load_image(v)) for v in val])
    with torch.no_grad():
        synth = G.synthesis(encoders.load_trained_encoder(final).ws(images), noise_mode="const")
    assert encoders.load_trained_encoder(final).extra["batchnorm_statistics"] == \
        "2 of the 2 real inputs"
    last = json.loads((tmp_path / "run" / encoder_job.LOG).read_text().splitlines()[-1])
    assert last["val_real_lpips"] == pytest.approx(float((synth - images).abs().mean()), rel=1e-4)
    assert last["val_real_pixel"] == pytest.approx(float((synth - images).square().mean()),
                                                   rel=1e-4)
    # continuing on a larger real set is allowed, and the log says where the set changed
    more = _faces(G, tmp_path / "real", 1, 9)
    assert len(more) == 3
    encoder_job.train_encoder(G, tmp_path / "run", tiny_config(kimg=0.016, real_every=1,
                              real_batch=2), gen_record, nets, lpips=MeanAbs(), real_paths=more,
                              progress=False)
    lines = (tmp_path / "run" / encoder_job.LOG).read_text().splitlines()
    log = [json.loads(line) for line in lines]
    events = [r for r in log if r.get("event") == "real inputs changed"]
    assert len(events) == 1 and events[0]["step"] == 2
    assert events[0]["real_inputs"]["count"] == 3
    assert events[0]["previous_real_inputs"]["count"] == 2
    assert log[-1]["step"] == 4 and "val_real_lpips" not in log[-1]  # no --val-images now


def test_calibrated_batchnorm_statistics_are_the_average_over_the_given_batches():
    from drfhq_lib.infer.encoder_training import calibrated, calibration_batches

    enc = encoders.Encoder4Editing(8, 32, TINY_STAGES, input_size=32, head_channels=16).train()
    for _ in range(3):  # training statistics, of another distribution
        enc(torch.randn(4, 3, 32, 32) * 3 + 2)
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    batches = [torch.rand(4, 3, 32, 32) * 2 - 1 for _ in range(3)]
    norms = [m for m in enc.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    seen = {m: [] for m in norms}  # oracle: each layer's inputs in train-mode passes of a copy
    hooks = [m.register_forward_hook(lambda m, i, o: seen[m].append(i[0].detach()))
             for m in norms]
    with torch.no_grad():
        for b in batches:
            enc(b)
    for h in hooks:
        h.remove()
    enc.load_state_dict(before)
    out = calibrated(enc, batches)
    assert not out.training and enc.training
    for m, copy in zip(norms, [m for m in out.modules() if isinstance(m, torch.nn.BatchNorm2d)]):
        mean = torch.stack([x.mean((0, 2, 3)) for x in seen[m]]).mean(0)
        var = torch.stack([x.transpose(0, 1).flatten(1).var(1) for x in seen[m]]).mean(0)
        torch.testing.assert_close(copy.running_mean, mean, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(copy.running_var, var, rtol=1e-4, atol=1e-5)
        assert copy.momentum == m.momentum
    for k, v in enc.state_dict().items():  # the original, weights and statistics, untouched
        assert torch.equal(v, before[k]), k
    assert all(torch.equal(out.state_dict()[k], v) for k, v in before.items()
               if "running" not in k and "num_batches" not in k)
    assert calibration_batches(9, 4) == [[0, 1, 2, 3], [4, 5, 6, 7, 8]]  # no batch of one
    assert calibration_batches(3, 2) == [[0, 1, 2]] and calibration_batches(1, 8) == [[0]]
    picked = sum(calibration_batches(5000, 8), [])
    assert len(picked) == 512 and picked[0] == 0 and picked[-1] == 4999


def test_a_log_line_averages_each_loss_over_the_steps_that_computed_it(tmp_path, G,
                                                                     monkeypatch):
    real = _faces(G, tmp_path / "real", 2, 7)
    returned, step = [], EncoderTrainer.step
    monkeypatch.setattr(EncoderTrainer, "step", lambda self: returned.append(step(self))
                        or returned[-1])
    monkeypatch.setattr(encoder_job, "LOG_INTERVALS", 1)  # one log line for the whole run
    cfg = tiny_config(kimg=0.016, real_every=2, real_batch=2)  # 4 steps, real ones 1 and 3
    encoder_job.train_encoder(G, tmp_path / "run", cfg, {"label": "tiny", "sha256": "ab" * 32},
                              [], lpips=MeanAbs(), real_paths=real, progress=False)
    line = json.loads((tmp_path / "run" / encoder_job.LOG).read_text().splitlines()[0])
    assert [("real_pixel" in r) for r in returned] == [False, True, False, True]
    for name in ("latent", "real_pixel"):
        values = [r[name] for r in returned if name in r]
        assert line[name] == pytest.approx(sum(values) / len(values), abs=1e-5), name


def test_training_moves_the_guess_from_w_avg_towards_the_true_w(G):
    trainer = EncoderTrainer(G, tiny_config(kimg=0.2), "cpu")
    before = trainer.evaluate()["val_latent"]
    assert 0.8 < before < 1.2  # the heads start near zero: the guess is w_avg, error ~ var(w)
    while not trainer.done:
        trainer.step()
    assert trainer.evaluate()["val_latent"] < 0.8 * before


# ----------------------------------------------------------------------------- CLI

def test_cli_trains_resumes_and_exports(tmp_path, G, capsys):
    from drfhq_lib.data.images import tensor_to_pil

    save_network(tmp_path / "g.safetensors", {"G_ema": G})
    images, _ = sample_targets(G, 2, torch.Generator().manual_seed(7), 0.0, torch.device("cpu"))
    for i, image in enumerate(tensor_to_pil(images.clamp(-1, 1))):  # "real" aligned faces
        (tmp_path / "real").mkdir(exist_ok=True)
        image.save(tmp_path / "real" / f"{i}.png")
    args = ["encoder", "train", "--generator", str(tmp_path / "g.safetensors"), "--out",
            str(tmp_path / "run"), "--kimg", "0.008", "--batch", "4", "--head-channels", "16",
            "--lpips-weight", "0", "--images", str(tmp_path / "real"), "--real-every", "1",
            "--real-batch", "2", "--real-lpips-weight", "0", "--snapshot-kimg", "0.004",
            "--export", str(tmp_path / "export"), "--label", "enc-tiny", "--no-progress",
            "--device", "cpu"]
    assert cli.main(args) == 0
    run = tmp_path / "run"
    record = json.loads((run / "encoder.safetensors.provenance.json").read_text())
    assert record["command"].startswith("drfhq encoder train --generator")
    assert record["kimg"] == 0.008 and record["steps"] == 2 and "train_seconds" in record
    assert record["real_inputs"] == 2 and "real_pixel" in record["log"][-1]
    assert record["networks"][0]["label"] == "g.safetensors"
    exported = json.loads((tmp_path / "export" / "enc-tiny.provenance.json").read_text())
    from drfhq_lib.files import sha256_file
    assert exported["sha256"] == sha256_file(tmp_path / "export" / "enc-tiny.safetensors")
    assert exported["fp16_max_ws_error_over_w_std"] < 0.05
    assert cli.main(args) == 0  # finished: the rerun trains nothing and writes the same result
    assert "other settings" not in capsys.readouterr().err
    code = cli.main(["encoder", "train", "--generator", str(tmp_path / "nope.pkl"), "--out",
                     str(run)])
    assert code == 2 and "--generator" in capsys.readouterr().err


def test_enhance_init_flags_are_checked(tmp_path, capsys):
    from drfhq_lib.infer import enhance

    render_ = str(enhance.SAMPLES / "kenji_portrait.png")
    code = cli.main(["enhance", render_, "--init", "w_avg", "--encoder", str(tmp_path / "e"),
                     "--out", str(tmp_path / "o"), "--device", "cpu"])
    assert code == 2 and "--init w_avg" in capsys.readouterr().err
    code = cli.main(["enhance", render_, "--init", "encoder", "--encoder",
                     str(tmp_path / "missing.safetensors"), "--out", str(tmp_path / "o"),
                     "--device", "cpu"])
    assert code == 2 and "missing.safetensors" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the mini world

MINI = pytest.mark.skipif(encoder_init.miniworld_encoder() is None,
                          reason="the committed mini-world encoder is missing")


@MINI
def test_encoder_start_beats_w_avg_at_equal_steps_on_held_out_renders(heldout, lpips_hed):
    from drfhq_lib.miniworld import models
    from drfhq_lib.nets import weights

    targets = heldout[0][:3]  # R renders of identities never seen in training (seed 2)
    name = models.rendering_name(models.RESOLUTION)
    G = models.load_generator(name)
    init, notes = encoder_init.load_encoder_init(encoder_init.miniworld_encoder().path, G,
                                                 generator_sha256=weights.resolve(name).sha256)
    assert notes == [], "the committed encoder is stale: retrain it (see its provenance)"
    params = ProjectionParams(steps=10, loss_size=64, w_avg_samples=2000)
    stats = w_statistics(G, params, torch.device("cpu"))
    guess = init(targets)
    with torch.no_grad():  # the guess alone is closer than w_avg ...
        w_avg = stats[0].expand(len(targets), G.num_ws, -1)
        assert lpips_hed(render(G, guess), targets).mean() < \
            lpips_hed(render(G, w_avg), targets).mean()
    # ... and the same 10 steps of the same projector end lower from it
    from_avg = project(G, targets, lpips_hed, params, progress=False, w_stats=stats)
    from_enc = project(G, targets, lpips_hed, params, progress=False, w_stats=stats,
                       init_ws=guess)
    assert sum(from_enc.final_loss) < sum(from_avg.final_loss), \
        (from_enc.final_loss, from_avg.final_loss)


@MINI
def test_projection_start_from_the_committed_encoder(heldout):
    from drfhq_lib.miniworld import models

    G = models.load_generator(models.rendering_name(models.RESOLUTION))
    paper = ProjectionParams(steps=7)
    assert encoder_init.projection_start("w_avg", G, paper) == (None, paper, None)
    init, params, record = encoder_init.projection_start("encoder", G, paper)
    assert params.initial_noise_factor == 0.0 and params.steps == 7  # only the noise changes
    assert record.name == encoder_init.MINIWORLD_ENCODER
    direct, _ = encoder_init.load_encoder_init(encoder_init.miniworld_encoder().path, G)
    targets = heldout[0][:2]
    torch.testing.assert_close(init(targets), direct(targets))
    with pytest.raises(DrfhqError, match="w_avg, encoder"):
        encoder_init.projection_start("zero", G, paper)
