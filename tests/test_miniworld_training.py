"""The mini world's training pieces and the ground-truth scores, against hand computations."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from drfhq_lib.eval import groundtruth
from drfhq_lib.miniworld import aligned
from drfhq_lib.miniworld.real_training import (RealMiniConfig, RealMiniTrainer, edges,
                                               r1_penalty, reconstruction_loss, regressed_copy)


def test_psnr_of_a_known_offset():
    a = torch.zeros(2, 3, 8, 8)
    b = torch.full((2, 3, 8, 8), 0.2)  # 0.1 of the [0, 1] range: mse 0.01 -> 20 dB
    assert torch.allclose(groundtruth.psnr(a, b), torch.tensor([20.0, 20.0]), atol=1e-4)


def test_bootstrap_interval_of_a_normal_sample_matches_the_textbook_interval():
    x = np.random.default_rng(1).normal(3.0, 2.0, 4000)
    low, high = groundtruth.bootstrap_interval(x, samples=4000)
    half = 1.96 * x.std() / math.sqrt(len(x))  # normal-theory 95 % interval of the mean
    assert low == pytest.approx(x.mean() - half, abs=0.25 * half)
    assert high == pytest.approx(x.mean() + half, abs=0.25 * half)
    assert groundtruth.bootstrap_interval([5.0, 5.0, np.nan]) == (5.0, 5.0)


def test_detail_transfer_oracle_keeps_r_below_the_blur_and_p_above():
    from drfhq_lib.miniworld.benchmark import detail_transfer_oracle

    g = torch.Generator().manual_seed(0)
    R = torch.rand(2, 3, 16, 16, generator=g) * 0.5 - 0.25
    checker = (torch.arange(16).view(1, 16) + torch.arange(16).view(16, 1)) % 2 * 0.2 - 0.1
    # a colour cast is all below any blur (a constant stays constant): the oracle keeps R's
    tinted = R + torch.tensor([0.3, 0.1, -0.2]).view(1, 3, 1, 1)
    assert torch.allclose(detail_transfer_oracle(R, tinted, 3, 2.5), R, atol=1e-6)
    # a one-pixel checkerboard is detail: a wide Gaussian passes almost none of it, so P's
    out = detail_transfer_oracle(R, R + checker, 13, 10.0)
    assert (out - R).mul(checker).mean() / checker.pow(2).mean() > 0.95
    assert torch.allclose(detail_transfer_oracle(R, R, 5, 2.0), R, atol=1e-6)


def test_landmark_error_is_the_mean_distance_over_the_eye_corner_distance():
    ref = np.zeros((1, 68, 2))
    ref[0, 36], ref[0, 45] = (10, 20), (30, 20)  # outer eye corners 20 px apart
    found = ref.copy()
    found[0, :, 0] += 2.0  # every point 2 px off
    assert groundtruth.landmark_error(found, ref) == pytest.approx([0.1])


def test_face_box_is_square_and_holds_the_face():
    lm = np.random.default_rng(0).uniform(20, 40, (68, 2))
    left, top, right, bottom = groundtruth.face_box(lm)
    assert abs((right - left) - (bottom - top)) <= 1
    assert left <= lm[:17, 0].min() + 1 and right >= lm[:17, 0].max() - 1
    assert bottom >= lm[:, 1].max() - 1


def test_sobel_edges_of_a_ramp():
    slope = 0.01
    ramp = (torch.arange(16.0) * slope).expand(1, 1, 16, 16)
    e = edges(ramp)
    # [-1 0 1] over two pixels, rows weighted (1, 2, 1) / 4: 2 * slope inside, 0 vertically
    assert torch.allclose(e[0, 0, 2:-2, 2:-2], torch.tensor(2 * slope), atol=1e-6)
    assert torch.allclose(e[0, 1, 2:-2, 2:-2], torch.tensor(0.0), atol=1e-6)


def test_r1_of_a_linear_discriminator_is_the_squared_norm_of_its_weights():
    a = torch.randn(3 * 4 * 4)
    D = lambda x: (x.flatten(1) @ a)[:, None]  # noqa: E731  D(x) = <a, x>, grad = a
    assert torch.allclose(r1_penalty(D, torch.randn(5, 3, 4, 4)), a.square().sum().expand(5))


def test_reconstruction_loss_is_zero_only_for_the_target():
    x = torch.rand(2, 3, 8, 8) * 2 - 1
    assert float(reconstruction_loss(x, x)) == 0.0
    assert float(reconstruction_loss(x + 0.1, x)) == pytest.approx(0.2, abs=1e-5)  # 0.1 + 0.1


def _tiny_trainer(**changes):
    cfg = RealMiniConfig(resolution=16, z_dim=8, w_dim=32, channel_base=256, channel_max=32,
                         batch=4, warm_kimg=0.2, adv_kimg=0.02, ema_kimg=0.01, **changes)
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(4, 8, generator=gen)
    images = torch.rand(4, 3, 16, 16, generator=gen) * 2 - 1
    return RealMiniTrainer(cfg, z, images)


def test_warm_start_fits_a_small_paired_set_then_the_adversarial_phase_runs():
    trainer = _tiny_trainer()
    with torch.no_grad():
        before = float(reconstruction_loss(trainer.G(trainer.z, noise_mode="const"), trainer.images))
    while trainer.phase == "warm":
        trainer.step()
    with torch.no_grad():
        after = float(reconstruction_loss(trainer.G(trainer.z, noise_mode="const"), trainer.images))
    assert after < 0.7 * before
    losses = trainer.step()
    assert trainer.phase == "adversarial" and {"D", "G_adv", "rec"} <= set(losses)
    while not trainer.done:
        trainer.step()
    assert trainer.kimg >= trainer.cfg.total_kimg


def test_resumed_training_continues_exactly():
    straight = _tiny_trainer()
    for _ in range(6):
        straight.step()
    first = _tiny_trainer()
    for _ in range(3):
        first.step()
    nets = {"G": first.G, "G_ema": first.G_ema, "D": first.D}
    state = first.state()
    resumed = _tiny_trainer()
    resumed.load_state(nets, state)
    for _ in range(3):
        resumed.step()
    for a, b in zip(straight.G.parameters(), resumed.G.parameters()):
        assert torch.allclose(a, b, atol=1e-6)


def test_regressed_copy_fits_the_targets_and_keeps_the_fine_tunes_frozen_parts():
    source = _tiny_trainer().G
    before = {k: v.clone() for k, v in source.state_dict().items()}
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(4, 8, generator=gen)
    targets = torch.rand(4, 3, 16, 16, generator=gen) * 2 - 1
    with torch.no_grad():
        start = float(reconstruction_loss(source(z, noise_mode="const"), targets))
    copy = regressed_copy(source, z, targets, kimg=0.4, batch=4, lr=2e-3, progress=False)
    with torch.no_grad():
        end = float(reconstruction_loss(copy(z, noise_mode="const"), targets))
    assert end < 0.7 * start
    after = copy.state_dict()
    frozen = [k for k in after if k.startswith("mapping.") or ".torgb." in k]
    assert frozen and all(torch.equal(after[k], before[k]) for k in frozen)
    assert any(not torch.equal(after[k], before[k]) for k in after if k not in frozen)
    assert all(torch.equal(v, before[k]) for k, v in source.state_dict().items())  # a copy


def _synthetic_render(folder, landmarks, name="000000"):
    for style, colour in (("R", 90), ("P", 160)):
        (folder / style).mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (128, 128), (colour, colour, colour)).save(folder / style / f"{name}.png")
    record = {"id": name, "z": [0.0] * 4, "landmarks": landmarks.tolist()}
    with open(folder / aligned.RECORDS, "a") as f:
        f.write(json.dumps(record) + "\n")


def test_aligned_landmarks_do_not_depend_on_where_the_face_was(tmp_path):
    """FFHQ alignment is a similarity to a canonical frame: the same face drawn at another
    place, scale and angle lands on the same aligned landmarks (the recipe's own invariance)."""
    base = np.random.default_rng(0).uniform(-1, 1, (68, 2)) * 6
    base[36:42] += (-12, -8)  # eyes
    base[42:48] += (12, -8)
    base[48:60] += (0, 14)  # mouth
    angle, scale, shift = 0.3, 1.4, np.array([70.0, 60.0])
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    _synthetic_render(tmp_path / "a", base + 64, "000000")
    _synthetic_render(tmp_path / "b", base @ rot.T * scale + shift, "000000")
    for name in ("a", "b"):
        aligned.align_folder(tmp_path / name, tmp_path / f"{name}-64", 64, progress=False)
    la, lb = (np.array(aligned.read_records(tmp_path / f"{n}-64")[0]["landmarks"]) for n in "ab")
    assert np.abs(la - lb).max() < 0.05
    ids, images, z = aligned.load_aligned(tmp_path / "a-64", "P")
    assert ids == ["000000"] and images.shape == (1, 3, 64, 64) and z.shape == (1, 4)
    assert images.mean() == pytest.approx(160 / 127.5 - 1, abs=0.02)


def finetune_settings(train_argv: list[str]) -> dict:
    """The settings `drfhq finetune` parses from the flags `drfhq miniworld train` passes it."""
    from drfhq_lib import cli
    from drfhq_lib.miniworld.build import BuildPlan
    from drfhq_lib.miniworld.cli import plan_from_args

    parser = cli.build_parser()
    plan = plan_from_args(parser.parse_args(["miniworld", "train", *train_argv]), BuildPlan)
    return vars(parser.parse_args(["finetune", *plan.finetune_flags]))


def test_miniworld_train_hands_finetune_the_papers_losses_scaled_to_64_px():
    settings = finetune_settings([])
    # Sec. 3.2: λs = 5e-6 for a sum over 512² pixels, so (512/64)² times that at 64 px
    assert settings["lambda_sketch"] == pytest.approx(5e-6 * 64)
    assert (settings["sketch_size"], settings["color_size"]) == (64, 64)
    assert (settings["kimg"], settings["ema_kimg"], settings["ada_kimg"]) == (2, 0.5, 5)
    assert settings["lambda_color"] == 37.5  # the mini world's λc, not the paper's 3.75e3


def test_miniworld_train_flags_reach_the_finetune():
    settings = finetune_settings(["--lambda-color", "3750", "--finetune-kimg", "8"])
    assert settings["lambda_color"] == 3750
    # the schedules keep the paper's ratios to its run length (40 kimg: ema 10, ADA 100)
    assert (settings["kimg"], settings["ema_kimg"], settings["ada_kimg"]) == (8, 2, 20)
