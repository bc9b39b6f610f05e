"""Fine-tuning (drfhq_lib.finetune) on tiny CPU networks: what is frozen and what trains, exact
resume, kill safety, two gloo processes, ADA wiring, the loss ablation switches, data checks."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import TinyLPIPS, TinySketch, substitute_or_skip
from drfhq_lib import finetune
from drfhq_lib.finetune import snapshots
from drfhq_lib.finetune.data import DatasetResolutionError, step_indices
from drfhq_lib.nets import load_network

ROOT = Path(__file__).resolve().parents[1]
RES = 16


TINY_NETS = {"sketch_net": TinySketch(), "lpips_net": TinyLPIPS()}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("finetune-inputs")
    return {
        "source": finetune.make_tiny_source(folder / "source.safetensors", RES, channels=16),
        "source_noD": finetune.make_tiny_source(folder / "noD.safetensors", RES, channels=16,
                                                with_D=False),
        "data": finetune.make_tiny_dataset(folder / "data.zip", RES, count=6),
        "data32": finetune.make_tiny_dataset(folder / "data32.zip", 32, count=2),
    }


def config(files, out, **changes) -> finetune.FinetuneConfig:
    settings = dict(source=str(files["source"]), data=str(files["data"]), out=str(out),
                    kimg=0.008, batch=4, snap=0.008, sketch_size=RES, color_size=RES,
                    device="cpu", identity=False, grid_size=2, progress=False,
                    deterministic=True, workers=1)
    settings.update(changes)
    return finetune.FinetuneConfig(**settings)


def state_of(path) -> dict[str, torch.Tensor]:
    nets = load_network(path)
    return {f"{n}.{k}": v for n, net in nets.items() for k, v in net.state_dict().items()}


ADA = dict(aug="ada", p=0.3, ada_interval=1, ada_kimg=0.1)  # p moves at every step


@pytest.fixture(scope="module")
def whole_run(files, tmp_path_factory):
    """Two uninterrupted steps (the first with both lazy regularisers), snapshots after each."""
    out = tmp_path_factory.mktemp("finetune") / "whole"
    return finetune.train(config(files, out, kimg=0.008, snap=0.004, **ADA), **TINY_NETS)


# ----------------------------------------------------------------------------- what trains

def test_mapping_and_torgb_frozen_everything_else_trains(files, whole_run):
    final = whole_run  # 2 steps: Gmain, Greg, Dmain, Dreg, then Gmain, Dmain
    source = load_network(files["source"])
    trained = load_network(final)
    G_real = source["G_ema"]
    for name in ("G", "G_ema"):
        before, after = G_real.state_dict(), trained[name].state_dict()
        params = dict(trained[name].named_parameters())
        for key, value in after.items():
            if finetune.is_frozen(key):
                assert torch.equal(value, before[key]), f"{name}.{key} changed"
            elif name == "G" and key in params:
                assert not torch.equal(value, before[key]), f"{name}.{key} did not train"
        assert torch.equal(after["mapping.w_avg"], before["mapping.w_avg"])
    D_before, D_after = source["D"].state_dict(), trained["D"].state_dict()
    for key, _ in trained["D"].named_parameters():
        assert not torch.equal(D_after[key], D_before[key]), f"D.{key} did not train"
    # the same z gives the same w+ in G_real and G_rendering
    z = torch.randn(3, G_real.z_dim)
    assert torch.equal(G_real.mapping(z), trained["G_ema"].mapping(z))
    # the snapshot folder: networks, state (weights-only), grid, log, provenance
    out = final.parent
    assert (out / "grid-000000008.png").is_file()
    assert snapshots.read_state(snapshots.state_path(out, 8))["step"] == 2
    record = json.loads(Path(str(final) + ".provenance.json").read_text())
    assert record["params"]["kimg"] == 0.008 and record["networks"][0]["label"] == \
        "stylegan2-untrained-small"


def test_source_without_discriminator_gets_a_new_one(files, tmp_path, capsys):
    trainer = finetune.Trainer(config(files, tmp_path / "run", source=str(files["source_noD"]),
                                      sketch=False, color=False))
    assert trainer.D.img_resolution == RES
    assert "has no discriminator" in capsys.readouterr().out


def test_rebuilding_for_mixed_precision_and_mbstd_keeps_the_networks(files):
    from drfhq_lib.finetune.trainer import with_mbstd_group, with_mixed_precision

    nets = load_network(files["source"])
    G16 = with_mixed_precision(nets["G"])
    assert G16.init_kwargs["synthesis_kwargs"]["num_fp16_res"] == 4
    assert G16.init_kwargs["synthesis_kwargs"]["conv_clamp"] == 256
    for a, b in zip(G16.state_dict().values(), nets["G"].state_dict().values()):
        assert torch.equal(a, b)
    D2 = with_mbstd_group(nets["D"], 2)
    assert D2.b4.mbstd.group_size == 2 and with_mbstd_group(D2, 2) is D2
    images = torch.randn(4, 3, RES, RES)
    assert D2(images).shape == (4, 1)


# ----------------------------------------------------------------------------- resume

def test_resume_is_exact_and_survives_a_broken_newest_snapshot(files, whole_run, tmp_path):
    expected = state_of(whole_run)
    whole = whole_run.parent
    # stopped after the first step, resumed for the second
    finetune.train(config(files, tmp_path / "parts", kimg=0.004, **ADA), **TINY_NETS)
    resumed = finetune.train(config(files, tmp_path / "parts", kimg=0.008, **ADA),
                             resume=tmp_path / "parts", **TINY_NETS)
    got = state_of(resumed)
    assert expected.keys() == got.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=1e-6, msg=key)
    s_whole = snapshots.read_state(snapshots.state_path(whole, 8))
    s_parts = snapshots.read_state(snapshots.state_path(tmp_path / "parts", 8))
    assert s_parts["ada"]["p"] == pytest.approx(s_whole["ada"]["p"]) and s_whole["ada"]["p"] != 0.3
    torch.testing.assert_close(s_parts["pl_mean"], s_whole["pl_mean"], rtol=0, atol=1e-6)
    for opt in ("G_opt", "D_opt"):
        for i, moments in s_whole[opt]["state"].items():
            for name, value in moments.items():
                torch.testing.assert_close(s_parts[opt]["state"][i][name], value, rtol=0,
                                           atol=1e-6)

    # kill -9 while the newest state was being written: resume takes the previous snapshot
    broken = tmp_path / "broken"
    shutil.copytree(whole, broken)
    newest = snapshots.state_path(broken, 8)
    newest.write_bytes(newest.read_bytes()[:100])
    with pytest.warns(UserWarning, match="skipping incomplete snapshot 8"):
        assert snapshots.latest_snapshot(broken).nimg == 4
    newest.unlink()  # state missing, network present
    assert snapshots.latest_snapshot(broken).nimg == 4
    again = finetune.train(config(files, broken, kimg=0.008, snap=0.004, **ADA), **TINY_NETS)
    got = state_of(again)
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=1e-6, msg=key)
    rows = [json.loads(line) for line in (broken / "log.jsonl").read_text().splitlines()]
    assert [r["nimg"] for r in rows] == [4, 8]


def test_resume_refuses_other_settings(files, tmp_path):
    finetune.Trainer(config(files, tmp_path / "run", sketch=False, color=False)).snapshot()
    with pytest.raises(finetune.ConfigError, match="gamma"):
        finetune.Trainer(config(files, tmp_path / "run", sketch=False, color=False, gamma=2.0))


# ----------------------------------------------------------------------------- sampling

def test_sampling_is_stateless_and_rank_split():
    n, batch = 10, 4
    single = step_indices(7, 3, batch, 0, 1, n)
    split = step_indices(7, 3, batch, 0, 2, n) + step_indices(7, 3, batch, 1, 2, n)
    assert single == split and len(single) == batch
    epoch = [i for s in range(5) for i in step_indices(7, s, 2, 0, 1, n)]
    assert sorted(epoch) == list(range(n))  # each epoch is a permutation


# ----------------------------------------------------------------------------- ADA wiring

@pytest.mark.parametrize("aug, sign, p_after", [("ada", +1, 2 * 4 / 100), ("ada", -1, 0.0),
                                                 ("fixed", +1, 0.5)])
def test_ada_p_follows_the_sign_of_D_on_reals(files, tmp_path, aug, sign, p_after):
    p = 0.5 if aug == "fixed" else 0.0
    trainer = finetune.Trainer(config(files, tmp_path / "run", aug=aug, p=p, ada_interval=1,
                                      ada_kimg=0.1, sketch=False, color=False,
                                      gamma=0, pl_weight=0))
    with torch.no_grad():  # a D that overfits (+) or underfits (-): every logit far on one side
        trainer.D.b4.out.bias.fill_(sign * 100.0)
    trainer.train_step()
    trainer.train_step()  # ADA: each step moves p by batch * interval / (ada_kimg * 1000)
    assert trainer.ada.rt == sign
    assert trainer.ada.p == pytest.approx(p_after)
    assert trainer.augment.p.item() == pytest.approx(p_after)


# ----------------------------------------------------------------------------- ablation

ABLATIONS = {
    "baseline": (dict(sketch=False, color=False, aug="noaug"), set()),
    "no_sketch": (dict(sketch=False), {"color"}),
    "no_color": (dict(color=False), {"sketch"}),
    "full": ({}, {"sketch", "color"}),
}


@pytest.mark.parametrize("name", list(ABLATIONS))
def test_loss_ablation_switches(files, tmp_path, name):
    changes, terms = ABLATIONS[name]
    trainer = finetune.Trainer(config(files, tmp_path / name, gamma=0, pl_weight=0, **changes),
                               **TINY_NETS)
    trainer.train_step()
    logged = trainer._collect()
    assert {"sketch", "color"} & set(logged) == terms
    assert "G_adv" in logged and "D_loss" in logged


def test_cli_with_registry_networks_writes_provenance(files, tmp_path):
    from drfhq_lib import cli
    from drfhq_lib.nets import weights

    resolved = substitute_or_skip(lambda: [weights.resolve("dfe-sketch"),
                                           weights.resolve("lpips-vgg16")],
                                  "sketch / LPIPS substitutes")
    out = tmp_path / "cli"
    code = cli.main(["finetune", "--source", str(files["source"]), "--data", str(files["data"]),
                     "--out", str(out), "--kimg", "0.004", "--batch", "4", "--snap", "1",
                     "--sketch-size", "16", "--color-size", "16", "--gamma", "0",
                     "--device", "cpu", "--grid", "2", "--no-progress"])
    assert code == 0
    final = snapshots.network_path(out, 4)
    assert set(load_network(final)) == {"G", "G_ema", "D"}
    record = json.loads(Path(str(final) + ".provenance.json").read_text())
    labels = {n["label"] for n in record["networks"]}
    assert {r.label for r in resolved} <= labels
    row = json.loads((out / "log.jsonl").read_text().splitlines()[-1])
    assert {"sketch", "color"} <= set(row["losses"])
    identity = row["identity"]  # untrained 16 px faces: dlib finds none in the 2 grid pairs
    assert identity is not None and "error" not in identity, identity
    assert identity["n_pairs"] == 2 and identity["n_no_face"] == 2


# ----------------------------------------------------------------------------- data

def test_wrong_resolution_is_a_clear_error(files, tmp_path):
    with pytest.raises(DatasetResolutionError) as err:
        finetune.Trainer(config(files, tmp_path / "run", data=str(files["data32"]),
                                sketch=False, color=False))
    message = str(err.value)
    assert "data32.zip" in message and "32x32" in message and f"{RES}x{RES}" in message


def test_xflip_doubles_the_dataset(files):
    mirrored = finetune.MirroredDataset(files["data"], xflip=True)
    assert len(mirrored) == 2 * mirrored.raw_count
    assert torch.equal(mirrored[mirrored.raw_count + 1], mirrored[1].flip(-1))
    assert len(finetune.MirroredDataset(files["data"], xflip=False)) == mirrored.raw_count


# ----------------------------------------------------------------------------- two processes

_WORKER = r"""
import json, os, sys, torch
sys.path.insert(0, {root!r})
from drfhq_lib import finetune
cfg = finetune.FinetuneConfig(**json.loads(sys.argv[1]))
trainer = finetune.Trainer(cfg, sketch_net=None, lpips_net=None)
trainer.run()
checksum = sum(float(p.double().sum()) for p in trainer.G.parameters())
with open(os.path.join(sys.argv[2], f"rank{{trainer.ranks.rank}}.json"), "w") as f:
    json.dump({{"checksum": checksum, "p": trainer.ada.p, "world": trainer.ranks.world}}, f)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # two processes / two extra projections: tens of seconds on 2 cores
def test_two_gloo_processes_train_and_write_one_snapshot(files, tmp_path):
    cfg = config(files, tmp_path / "ddp", kimg=0.004, snap=1, sketch=False, color=False,
                 aug="ada", ada_interval=1, deterministic=False)
    script = tmp_path / "worker.py"
    script.write_text(_WORKER.format(root=str(ROOT)))
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()),
           "WORLD_SIZE": "2", "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, str(script), json.dumps(cfg.as_dict()),
                               str(tmp_path)], env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for r in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(outputs)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0]["world"] == 2
    assert ranks[0]["checksum"] == ranks[1]["checksum"]  # gradients were averaged
    assert ranks[0]["p"] == ranks[1]["p"]  # ADA statistics were summed
    assert snapshots.snapshot_nimgs(tmp_path / "ddp") == [4]
    assert set(load_network(snapshots.network_path(tmp_path / "ddp", 4))) == {"G", "G_ema", "D"}
