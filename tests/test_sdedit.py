"""SDEdit (Fig. 8): the loader of diffusers folders, the algorithm, the Fig. 8 job.

Every model here is a tiny randomly initialised diffusers UNet (and VQ autoencoder), saved with
``save_pretrained`` into a temporary folder, so the loader is exercised too. Oracles: the
timesteps SDEdit must visit computed by hand from t0, T and the step count; the closed form of
DDIM with a UNet that predicts zero noise; the files' own contents.
"""

import json
import pickle

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel, VQModel  # noqa: E402

from drfhq_lib.errors import CheckpointFormatError, UnsafeCheckpointError  # noqa: E402
from drfhq_lib.eval import sdedit_runs  # noqa: E402
from drfhq_lib.eval.inversion_runs import InversionRun  # noqa: E402
from drfhq_lib.eval.sdedit import SDEditParams, sdedit, sdedit_timesteps  # noqa: E402
from drfhq_lib.nets import diffusion  # noqa: E402

SIZE = 16


def tiny_unet(seed: int = 0, channels: int = 3, size: int = SIZE, zero: bool = False):
    torch.manual_seed(seed)
    unet = UNet2DModel(sample_size=size, in_channels=channels, out_channels=channels,
                       layers_per_block=1, block_out_channels=(8, 16), norm_num_groups=4,
                       down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"))
    if zero:  # predicts zero noise everywhere
        torch.nn.init.zeros_(unet.conv_out.weight)
        torch.nn.init.zeros_(unet.conv_out.bias)
    return unet


def tiny_vq(seed: int = 1):
    torch.manual_seed(seed)
    return VQModel(in_channels=3, out_channels=3, latent_channels=3, num_vq_embeddings=16,
                   block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
                   down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
                   up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
                   sample_size=2 * SIZE)


def save_folder(folder, unet, scheduler, vq=None, safe: bool = True):
    """A checkpoint folder as ``DiffusionPipeline.save_pretrained`` writes it."""
    unet.save_pretrained(folder / "unet", safe_serialization=safe)
    scheduler.save_pretrained(folder / "scheduler")
    index = {"_class_name": "LDMPipeline" if vq else "DDPMPipeline",
             "_diffusers_version": "0.42.1", "unet": ["diffusers", "UNet2DModel"],
             "scheduler": ["diffusers", type(scheduler).__name__]}
    if vq is not None:
        vq.save_pretrained(folder / "vqvae", safe_serialization=safe)
        index["vqvae"] = ["diffusers", "VQModel"]
    (folder / "model_index.json").write_text(json.dumps(index))
    return folder


@pytest.fixture
def ddpm_folder(tmp_path):
    return save_folder(tmp_path / "ddpm", tiny_unet(), DDIMScheduler(clip_sample=False))


def images(n: int = 2, size: int = SIZE, seed: int = 3) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


class TimestepRecorder:
    """Records the timestep of every UNet call (the UNet is called as ``unet(x, t)``)."""

    def __init__(self, unet):
        self.seen = []
        unet.register_forward_pre_hook(lambda module, args: self.seen.append(int(args[1])))


# ----------------------------------------------------------------------------- end to end

def test_sdedit_runs_end_to_end_on_a_tiny_untrained_unet(ddpm_folder):
    model = diffusion.load_diffusion(ddpm_folder)
    assert model.autoencoder is None and model.resolution == SIZE
    result = sdedit(model, images(2, size=24), SDEditParams(steps=20), progress=False)
    assert result.samples.shape == (2, 3, 3, SIZE, SIZE)  # resized to the model's size
    assert torch.isfinite(result.samples).all()
    assert result.samples.min() >= -1 and result.samples.max() <= 1
    assert model.resolved.path == ddpm_folder and len(model.resolved.sha256) == 64


def test_latent_diffusion_encodes_denoises_latents_and_decodes(tmp_path):
    folder = save_folder(tmp_path / "ldm", tiny_unet(), DDIMScheduler(clip_sample=False),
                         tiny_vq())
    model = diffusion.load_diffusion(folder)
    assert model.autoencoder is not None
    assert model.resolution == 2 * SIZE  # 16 px latents, two encoder blocks: x2
    recorder = TimestepRecorder(model.unet)
    shapes = []
    model.unet.register_forward_pre_hook(lambda m, args: shapes.append(tuple(args[0].shape)))
    result = sdedit(model, images(1, size=2 * SIZE), SDEditParams(steps=10, seeds=(0, 1)),
                    progress=False)
    assert result.samples.shape == (1, 2, 3, 2 * SIZE, 2 * SIZE)
    assert set(shapes) == {(2, 3, SIZE, SIZE)}  # the UNet saw latents, not pixels
    assert recorder.seen == [300, 200, 100, 0]  # 10 steps of 1000: every 100th, <= 300


def test_samples_differ_between_seeds_and_repeat_with_the_same_seed(ddpm_folder):
    model = diffusion.load_diffusion(ddpm_folder)
    x = images(1)
    params = SDEditParams(steps=20, seeds=(5, 5, 7), batch=3)
    first = sdedit(model, x, params, progress=False).samples[0]
    assert torch.equal(first[0], first[1])  # same seed, same batch
    assert (first[0] - first[2]).abs().max() > 0.05  # another seed, another sample
    alone = sdedit(model, x, SDEditParams(steps=20, seeds=(5,), batch=1), progress=False)
    assert torch.allclose(alone.samples[0, 0], first[0], atol=1e-5)  # batch does not matter
    again = sdedit(model, x, params, progress=False).samples[0]
    assert torch.equal(again, first)


# ----------------------------------------------------------------------------- t0

def test_t0_sets_the_first_denoising_timestep_to_03_T():
    # DDIM, 50 "leading" steps of T = 1000: the scheduler's timesteps are 980, 960, ..., 0
    # (step 1000 // 50 = 20); SDEdit keeps those <= 0.3 * 1000 = 300: 300, 280, ..., 0
    scheduler = DDIMScheduler(num_train_timesteps=1000, clip_sample=False)
    assert sdedit_timesteps(scheduler, 0.3, 50) == list(range(300, -1, -20))
    # "trailing" spacing: 999, 979, ..., 19; the largest <= 300 is 299
    trailing = DDIMScheduler(num_train_timesteps=1000, timestep_spacing="trailing")
    assert sdedit_timesteps(trailing, 0.3, 50)[0] == 299
    # DDPM's full chain: every timestep from 300 down to 0
    assert sdedit_timesteps(DDPMScheduler(num_train_timesteps=1000), 0.3, 1000) == \
        list(range(300, -1, -1))


def test_the_unet_is_first_called_at_03_T(ddpm_folder):
    model = diffusion.load_diffusion(ddpm_folder)
    recorder = TimestepRecorder(model.unet)
    result = sdedit(model, images(1), SDEditParams(steps=50, seeds=(0,)), progress=False)
    assert recorder.seen == list(range(300, -1, -20))  # 16 calls: ~t0 * 50
    assert result.start_timestep == 300 == 0.3 * model.num_train_timesteps


def test_noise_level_at_t0_matches_the_closed_form(tmp_path):
    # A UNet that predicts zero noise and deterministic DDIM (eta 0, no clipping): each step
    # maps x_t to sqrt(a_prev / a_t) x_t, so the chain from t = 300 ends (a_final = 1) at
    # x_300 / sqrt(a_300) = x0 + sqrt(1 / a_300 - 1) * eps, with eps the seed's start noise and
    # a_300 = prod_{i <= 300} (1 - beta_i), betas linear from 1e-4 to 0.02 over 1000 steps.
    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02,
                              beta_schedule="linear", clip_sample=False, set_alpha_to_one=True)
    folder = save_folder(tmp_path / "zero", tiny_unet(zero=True), scheduler)
    model = diffusion.load_diffusion(folder)
    x0 = 0.2 * images(1)
    result = sdedit(model, x0, SDEditParams(steps=50, seeds=(11,), eta=0.0), progress=False)
    alpha_bar = np.prod(1.0 - np.linspace(1e-4, 0.02, 1000)[:301])
    eps = torch.randn((1, 3, SIZE, SIZE), generator=torch.Generator().manual_seed(11))
    expected = (x0 + float(np.sqrt(1.0 / alpha_bar - 1.0)) * eps).clamp(-1, 1)
    assert torch.allclose(result.samples[:, 0], expected, atol=1e-4)


def test_t0_below_every_inference_timestep_is_refused():
    from drfhq_lib.errors import DrfhqError

    trailing = DDIMScheduler(timestep_spacing="trailing")  # 10 steps: 999, 899, ..., 99
    with pytest.raises(DrfhqError, match="t0"):
        sdedit_timesteps(trailing, 0.05, 10)  # 0.05 * 1000 = 50 < 99
    assert sdedit_timesteps(trailing, 0.1, 10) == [99]


# ----------------------------------------------------------------------------- loading safely

def test_pickled_weights_load_through_the_weights_only_loader(tmp_path, ddpm_folder):
    folder = save_folder(tmp_path / "bin", tiny_unet(), DDIMScheduler(clip_sample=False),
                         safe=False)
    assert (folder / "unet" / diffusion.PICKLE).is_file()
    from_bin, from_safe = diffusion.load_diffusion(folder), diffusion.load_diffusion(ddpm_folder)
    for a, b in zip(from_bin.unet.state_dict().values(), from_safe.unet.state_dict().values()):
        assert torch.equal(a, b)


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):  # unpickling would write the marker file
        return (open, (str(self.marker), "w"))


def test_a_pickle_that_runs_code_is_refused_and_nothing_runs(tmp_path):
    folder = save_folder(tmp_path / "evil", tiny_unet(), DDIMScheduler(), safe=False)
    marker = tmp_path / "pwned"
    weights = folder / "unet" / diffusion.PICKLE
    torch.save({"conv_in.weight": _Exploit(marker)}, weights, pickle_module=pickle)
    with pytest.raises(UnsafeCheckpointError, match="refused"):
        diffusion.load_diffusion(folder)
    assert not marker.exists()


def test_custom_pipeline_classes_are_refused(ddpm_folder):
    index = json.loads((ddpm_folder / "model_index.json").read_text())
    (ddpm_folder / "model_index.json").write_text(json.dumps(
        {**index, "unet": ["my_pipeline_module", "UNet2DModel"]}))
    with pytest.raises(UnsafeCheckpointError, match="my_pipeline_module"):
        diffusion.load_diffusion(ddpm_folder)
    (ddpm_folder / "model_index.json").write_text(json.dumps(
        {**index, "_class_name": "MyCustomPipeline"}))
    with pytest.raises(UnsafeCheckpointError, match="MyCustomPipeline"):
        diffusion.load_diffusion(ddpm_folder)


def test_a_folder_without_weights_names_what_is_missing(ddpm_folder):
    (ddpm_folder / "unet" / diffusion.SAFETENSORS).unlink()
    with pytest.raises(CheckpointFormatError, match="diffusion_pytorch_model.safetensors"):
        diffusion.load_diffusion(ddpm_folder)


def test_vq_latent_scale_is_the_configs_or_1(tmp_path):
    folder = save_folder(tmp_path / "ldm", tiny_unet(), DDIMScheduler(), tiny_vq())
    config = folder / "vqvae" / "config.json"
    data = json.loads(config.read_text())
    data["scaling_factor"] = 0.5
    config.write_text(json.dumps(data))
    assert diffusion.load_diffusion(folder).latent_scale == 0.5
    del data["scaling_factor"]  # as in CompVis/ldm-celebahq-256's main branch
    config.write_text(json.dumps(data))
    model = diffusion.load_diffusion(folder)
    assert model.latent_scale == 1.0 and any("1.0" in n for n in model.notes)


def test_scheduler_override_keeps_the_noise_schedule(ddpm_folder):
    model = diffusion.load_diffusion(ddpm_folder, scheduler="ddpm")
    assert type(model.scheduler).__name__ == "DDPMScheduler"
    assert model.scheduler.config.beta_end == DDIMScheduler().config.beta_end
    with pytest.raises(CheckpointFormatError, match="not supported"):
        diffusion.load_diffusion(ddpm_folder, scheduler="EulerDiscreteScheduler")


# ----------------------------------------------------------------------------- not run

def test_without_a_checkpoint_it_is_not_run_and_names_the_folder(empty_weights, tmp_path):
    assert diffusion.find_checkpoint(None) is None
    reason = diffusion.missing_reason(None)
    assert str(empty_weights / "ldm-celebahq-256") in reason and "model_index.json" in reason
    assert "CompVis/ldm-celebahq-256" in reason
    ours = _fake_inversion_run(tmp_path / "out", ["a", "b"])
    run = sdedit_runs.run_sdedit(ours, None, SDEditParams(seeds=(0, 1, 2)), progress=False)
    assert [r["status"] for r in run.rows] == ["not run"] * 6
    assert all(str(empty_weights / "ldm-celebahq-256") in r["reason"] for r in run.rows)
    given = sdedit_runs.run_sdedit(ours, tmp_path / "nowhere", SDEditParams(seeds=(0,)),
                                   progress=False)
    assert all(str(tmp_path / "nowhere") in r["reason"] for r in given.rows)
    cells, missing, _, columns = sdedit_runs.grid_cells(run, ours)
    assert columns == ["input", "SDEdit, seed 0", "SDEdit, seed 1", "SDEdit, seed 2", "ours"]
    assert [c is None for c in cells[0]] == [False, True, True, True, False]
    assert "ldm-celebahq-256" in missing[0][1].replace("\n", "")


def _fake_inversion_run(out, names, size=SIZE):
    """An inversion run's folder as run_methods leaves it: aligned inputs, ours's results."""
    from drfhq_lib.data.images import tensor_to_pil
    from drfhq_lib.files import write_png_atomic

    rows = []
    for i, name in enumerate(names):
        write_png_atomic(out / "aligned" / f"{name}.png", tensor_to_pil(images(1, size, i))[0])
        write_png_atomic(out / "ours" / f"{name}.png", tensor_to_pil(images(1, size, 9))[0])
        rows.append({"item": f"ours/{name}", "method": "ours", "input": f"in/{name}.png",
                     "status": "ok", "reason": "", "trained": "true"})
    return InversionRun(out, rows, list(names), [], True)


def test_fig8_job_writes_samples_and_reruns_only_what_is_missing(ddpm_folder, tmp_path,
                                                                 monkeypatch):
    monkeypatch.setattr(sdedit_runs, "_with_metrics", lambda rows, *a: rows)  # no LPIPS here
    ours = _fake_inversion_run(tmp_path / "out", ["a", "b"])
    params = SDEditParams(steps=10, seeds=(0, 1, 2))
    run = sdedit_runs.run_sdedit(ours, ddpm_folder, params, progress=False)
    assert [r["status"] for r in run.rows] == ["ok"] * 6
    assert {r["start_timestep"] for r in run.rows} == {"300"}
    files = sorted(p.name for p in (tmp_path / "out" / "sdedit").iterdir())
    assert files == [f"{n}_seed{s}.png" for n in "ab" for s in (0, 1, 2)]
    (tmp_path / "out" / "sdedit" / "b_seed1.png").unlink()
    calls = []
    real = sdedit_runs.sdedit
    monkeypatch.setattr(sdedit_runs, "sdedit",
                        lambda m, x, p, *a, **k: calls.append(p.seeds) or real(m, x, p, *a, **k))
    again = sdedit_runs.run_sdedit(ours, ddpm_folder, params, progress=False)
    assert calls == [(1,)] and [r["status"] for r in again.rows] == ["ok"] * 6
    cells, missing, names, _ = sdedit_runs.grid_cells(again, ours)
    assert names == ["a", "b"] and all(c is not None for row in cells for c in row)
    table = sdedit_runs.table_rows(again, ours)
    assert len(table) == 2 * 3 + 2 and len({tuple(r) for r in table}) == 1


def test_the_registry_folder_is_found_and_named(empty_weights):
    folder = save_folder(empty_weights / "ldm-celebahq-256", tiny_unet(), DDIMScheduler())
    assert diffusion.find_checkpoint(None) == folder == diffusion.default_folder()
    model = diffusion.load_diffusion(folder)
    assert model.label == "ldm-celebahq-256" and model.resolved.kind == "official"
    from drfhq_lib.nets import weights

    row = next(r for r in weights.status_rows() if r["network"] == "ldm-celebahq-256")
    assert row["use"] == "official" and row["found"] == str(folder / "model_index.json")
