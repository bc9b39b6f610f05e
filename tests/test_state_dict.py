"""The one weights-only torch.load: missing, refused (pickled code) and corrupt files each get
their own error, naming the file and the way out; every reader of .pt files goes through it."""

import argparse
import os

import pytest
import torch

from drfhq_lib.errors import CheckpointFormatError, MissingWeightsError, UnsafeCheckpointError
from drfhq_lib.nets.state_dict import load_weights_only


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):  # would create the marker file if ever unpickled
        return (open, (self.marker, "w"))


def test_a_plain_state_dict_reads_back(tmp_path):
    torch.save({"w": torch.arange(3.0)}, tmp_path / "ok.pt")
    torch.testing.assert_close(load_weights_only(tmp_path / "ok.pt")["w"], torch.arange(3.0))


def test_a_missing_file_is_missing_weights_with_the_fix(tmp_path):
    with pytest.raises(MissingWeightsError, match=r"nope\.pt: no such checkpoint file.*sketch net.*fetch"):
        load_weights_only(tmp_path / "nope.pt", "sketch net", "fetch it")


def test_pickled_code_is_refused_unrun(tmp_path):
    marker = tmp_path / "ran"
    torch.save({"w": torch.ones(1), "x": _Payload(os.fspath(marker))}, tmp_path / "evil.pt")
    with pytest.raises(UnsafeCheckpointError, match=r"evil\.pt: refused.*GLOBAL.*released file"):
        load_weights_only(tmp_path / "evil.pt")
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"not a torch file at all", None])
def test_corrupt_files_are_format_errors_not_unsafe(tmp_path, content):
    torch.save({"w": torch.ones(100)}, tmp_path / "good.pt")
    data = (tmp_path / "good.pt").read_bytes()
    (tmp_path / "bad.pt").write_bytes(content if content is not None else data[: len(data) // 2])
    with pytest.raises(CheckpointFormatError, match=r"bad\.pt: not a readable torch file") as err:
        load_weights_only(tmp_path / "bad.pt", fix="download it again")
    assert not isinstance(err.value, UnsafeCheckpointError)
    assert "download it again" in str(err.value)


def test_allowed_plain_classes_pass_only_when_asked(tmp_path):
    torch.save({"args": argparse.Namespace(size=8)}, tmp_path / "ros.pt")
    with pytest.raises(UnsafeCheckpointError):
        load_weights_only(tmp_path / "ros.pt")
    assert load_weights_only(tmp_path / "ros.pt", safe_globals=[argparse.Namespace])["args"].size == 8


def test_no_other_module_calls_torch_load_on_a_file():
    import drfhq_lib

    root = os.path.dirname(drfhq_lib.__file__)
    callers = []
    for folder, _, files in os.walk(root):
        for name in files:
            if name.endswith(".py") and name != "state_dict.py":
                text = open(os.path.join(folder, name), encoding="utf-8").read()
                code = [l for l in text.splitlines() if "torch.load(" in l
                        and "BytesIO" not in l and not l.strip().startswith(("#", "``", "*"))]
                callers += [f"{name}: {l.strip()}" for l in code if "``" not in l]
    assert callers == []
