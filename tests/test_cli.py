"""The command line a newcomer meets: one-line errors that name the file or flag, the exit-code
rule (0 ok, 1 some items failed, 2 usage/expected error, 130 interrupted), consistent flags."""

import subprocess
import sys

import pytest

from drfhq_lib import cli, finetune, notebooks
from drfhq_lib.commands import options
from drfhq_lib.infer import enhance

RENDER = enhance.SAMPLES / "kenji_portrait.png"


def one_error_line(capsys, command: str) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert "Traceback" not in captured.err and len(lines) == 1, captured.err
    assert lines[0].startswith(f"drfhq {command}: error: "), lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    return {"source": finetune.make_tiny_source(folder / "source.safetensors", 16, channels=16),
            "data32": finetune.make_tiny_dataset(folder / "data32.zip", 32, count=2)}


# ----------------------------------------------------------------------------- finetune

def test_finetune_without_source_flag(tmp_path, tiny, capsys):
    code = cli.main(["finetune", "--data", str(tiny["data32"]), "--out", str(tmp_path / "o")])
    line = one_error_line(capsys, "finetune")
    assert code == 2 and "--source required" in line and "--resume" in line


def test_finetune_with_missing_source_file(tmp_path, tiny, capsys):
    code = cli.main(["finetune", "--source", str(tmp_path / "ffhq.pkl"), "--data",
                     str(tiny["data32"]), "--out", str(tmp_path / "o"), "--device", "cpu"])
    line = one_error_line(capsys, "finetune")
    assert code == 2 and f"--source {tmp_path / 'ffhq.pkl'}: no such network file" in line
    assert "drfhq weights fetch stylegan2-ffhq" in line
    assert not (tmp_path / "o").exists()


def test_finetune_with_missing_data(tmp_path, tiny, capsys):
    code = cli.main(["finetune", "--source", str(tiny["source"]), "--data",
                     str(tmp_path / "d.zip"), "--out", str(tmp_path / "o")])
    line = one_error_line(capsys, "finetune")
    assert code == 2 and "--data" in line and "drfhq dataset pack" in line


def test_finetune_with_dataset_of_wrong_resolution(tmp_path, tiny, capsys):
    code = cli.main(["finetune", "--source", str(tiny["source"]), "--data", str(tiny["data32"]),
                     "--out", str(tmp_path / "o"), "--device", "cpu", "--kimg", "0.004",
                     "--no-progress", "--no-identity"])
    line = one_error_line(capsys, "finetune")
    assert code == 2 and "32x32" in line and "16x16" in line and "--resolution 16" in line


def test_finetune_error_is_one_line_in_a_real_process(tmp_path, tiny):
    done = subprocess.run([sys.executable, "-m", "drfhq_lib", "finetune", "--source",
                           str(tmp_path / "nope.pkl"), "--data", str(tiny["data32"]), "--out",
                           str(tmp_path / "o")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        line for line in done.stderr.strip().splitlines() if line.startswith("drfhq finetune")]


# ----------------------------------------------------------------------------- enhance

def test_enhance_with_missing_rendering_file(tmp_path, capsys):
    code = cli.main(["enhance", str(RENDER), "--rendering", str(tmp_path / "g.pkl"),
                     "--out", str(tmp_path / "o")])
    line = one_error_line(capsys, "enhance")
    assert code == 2 and f"--rendering {tmp_path / 'g.pkl'}: no such" in line
    assert "drfhq finetune" in line


def test_enhance_with_a_users_g_real_but_no_rendering_is_one_line(tmp_path, tiny, capsys):
    # without --rendering only the mini world (or the demo) has a G_rendering to offer
    code = cli.main(["enhance", str(RENDER), "--real", str(tiny["source"]), "--out",
                     str(tmp_path / "o")])
    line = one_error_line(capsys, "enhance")
    assert code == 2 and "--rendering" in line and "miniworld" in line


def test_enhance_with_missing_real(tmp_path, tiny, capsys):
    code = cli.main(["enhance", str(RENDER), "--rendering", str(tiny["source"]), "--real",
                     str(tmp_path / "ffhq.pkl"), "--out", str(tmp_path / "o")])
    line = one_error_line(capsys, "enhance")
    assert code == 2 and f"--real {tmp_path / 'ffhq.pkl'}: no such network file" in line
    assert "leave --real out" in line


def test_enhance_with_missing_input(tmp_path, tiny, capsys):
    code = cli.main(["enhance", str(tmp_path / "nope.png"), "--rendering", str(tiny["source"]),
                     "--real", str(tiny["source"]), "--out", str(tmp_path / "o")])
    line = one_error_line(capsys, "enhance")
    assert code == 2 and "nope.png: no such file or folder" in line


def test_enhance_color_match_out_of_range(tmp_path, tiny, capsys):
    code = cli.main(["enhance", str(RENDER), "--rendering", str(tiny["source"]),
                     "--color-match", "3", "--out", str(tmp_path / "o")])
    assert code == 2 and "--color-match 3" in one_error_line(capsys, "enhance")


# ----------------------------------------------------------------------------- flags

def _subparser(name):
    parser = cli.build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return action.choices[name]


def test_color_match_spelling_and_deprecated_alias(capsys):
    p = _subparser("enhance")
    assert p.parse_args(["x", "--rendering", "g", "--out", "o",
                         "--color-match", "0.5"]).color_match == 0.5
    assert p.parse_args(["x", "--rendering", "g", "--out", "o",
                         "--colour-match", "0.25"]).color_match == 0.25
    assert "--colour-match is deprecated, use --color-match" in capsys.readouterr().err
    assert "--colour-match" not in p.format_help() and "--color-match" in p.format_help()
    assert "--no-color" in _subparser("finetune").format_help()


def test_one_device_default_everywhere():
    assert options.DEFAULT_DEVICE == "auto" == finetune.FinetuneConfig().device
    for name in ("enhance", "demo"):
        device = next(a for a in _subparser(name)._actions if a.dest == "device")
        assert device.default == options.DEFAULT_DEVICE and device.help == options.DEVICE_HELP
    ft = next(a for a in _subparser("finetune")._actions if a.dest == "device")
    assert ft.help == options.DEVICE_HELP  # default left to FinetuneConfig ('auto')


def test_unavailable_device_is_an_expected_error():
    import torch

    from drfhq_lib.errors import DrfhqError

    with pytest.raises(DrfhqError, match="--device gpu"):
        options.device_of("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(DrfhqError, match="--device cpu"):
            options.device_of("cuda")
    assert options.device_of("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


# ----------------------------------------------------------------------------- exit codes

def test_interrupt_exits_130(monkeypatch, capsys):
    from drfhq_lib.commands import weights as weights_command

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(weights_command, "run", interrupted)
    assert cli.main(["weights"]) == options.EXIT_INTERRUPTED == 130
    assert "rerun the same command to resume" in capsys.readouterr().err


def test_file_error_without_drfhq_error_is_one_line(monkeypatch, capsys, tmp_path):
    from drfhq_lib.commands import weights as weights_command

    def denied(args):
        raise PermissionError(13, "Permission denied", str(tmp_path / "x"))

    monkeypatch.setattr(weights_command, "run", denied)
    assert cli.main(["weights"]) == 2
    assert "x: Permission denied" in one_error_line(capsys, "weights")


def test_batch_exit_code_rule():
    assert options.batch_exit_code(0) == 0 and options.batch_exit_code(3) == 1
    assert "130 interrupted" in options.EXIT_CODES_TEXT
    assert options.EXIT_CODES_TEXT in cli.build_parser().format_help().replace("\n", " ") \
        or "exit codes" in cli.build_parser().format_help()


# ----------------------------------------------------------------------------- notebooks

def test_notebooks_without_flag_prints_help_and_runs_nothing(capsys, monkeypatch):
    monkeypatch.setattr(notebooks, "run_notebook", lambda *a, **k: pytest.fail("ran a notebook"))
    assert cli.main(["notebooks"]) == 2
    out = capsys.readouterr().out
    assert "usage: drfhq notebooks" in out and "--strip" in out


def test_reproduce_ci_writes_under_out_only(capsys, monkeypatch):
    seen = []
    monkeypatch.setattr(notebooks, "run_notebook", lambda nb, out, params, **k: seen.append(
        (nb, out, params)))
    assert cli.main(["reproduce", "--ci", "--only", "03", "08"]) == 0
    assert [nb.stem for nb, _, _ in seen] == ["03_inference", "08_postprocess"]
    for nb, out, params in seen:
        assert notebooks.CI_OUT in out.parents
        for key in ("figures_dir", "results_dir", "work_dir"):
            assert notebooks.CI_OUT in __import__("pathlib").Path(params[key]).parents, key
        assert params["allow_untrained"] is True  # the CI parameters are applied
    out = capsys.readouterr().out
    assert "out/reproduce-ci" in out and "figures/ and results/ are not touched" in out


def test_reproduce_preface_and_parameters(tmp_path, capsys, monkeypatch):
    seen = {}
    monkeypatch.setattr(notebooks, "run_notebook",
                        lambda nb, out, params, **k: seen.__setitem__(nb.stem, params))
    (tmp_path / "p.yaml").write_text("kimg: 2\n02_finetune:\n  batch: 8\n")
    assert cli.main(["reproduce", "--only", "02", "10", "-p", "data", str(tmp_path / "d.zip"),
                     "--parameters", str(tmp_path / "p.yaml")]) == 0
    assert seen["02_finetune"] == {"data": str(tmp_path / "d.zip"), "kimg": 2, "batch": 8}
    assert seen["10_loss_ablation"] == {"data": str(tmp_path / "d.zip"), "kimg": 2}
    out = capsys.readouterr().out
    assert "02_finetune: data = " in out and "(MISSING)" in out
    assert "-p NAME VALUE" in out and "--parameters FILE.yaml" in out


def test_reproduce_dry_run_names_the_datasets(capsys, monkeypatch):
    monkeypatch.setattr(notebooks, "run_notebook", lambda *a, **k: pytest.fail("ran"))
    assert cli.main(["reproduce", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "09_style_transfer: data_drfhq = '~/drfhq/work/drfhq-1024.zip'" in out
    assert "data_ffhq" in out and "13_dataset_ablation" in out


def test_reproduce_unknown_parameter_is_an_error(capsys):
    assert cli.main(["reproduce", "--dry-run", "-p", "kimgg", "2"]) == 2
    assert "kimgg" in one_error_line(capsys, "reproduce")


def test_optional_commands_are_registered_when_present():
    import importlib.util

    names = set(next(a for a in cli.build_parser()._actions if a.dest == "command").choices)
    assert {"weights", "reproduce", "notebooks", "align", "dataset", "finetune", "enhance",
            "demo"} <= names
    if importlib.util.find_spec("drfhq_lib.miniworld.cli") is not None:
        module = importlib.import_module("drfhq_lib.miniworld.cli")
        if hasattr(module, "add_cli") or hasattr(module, "add_miniworld_parser"):
            assert "miniworld" in names


import importlib  # noqa: E402 (used above)
