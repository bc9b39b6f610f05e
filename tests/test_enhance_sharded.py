"""Enhance shared over torchrun's processes (drfhq_lib.infer.sharding).

The oracle of the end-to-end tests is a one-process run of the same job: two gloo processes
must write byte-equal images and latents and equal manifest rows; a run whose rank is killed
must leave only complete files (each equal to the one-process run's), and its rerun must
finish the job with the one-process run's files. The deal and the merge are checked against
hand-worked cases.
"""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from drfhq_lib.data.manifest import DONE_STATUSES, merge_parts, part_path, part_paths, write_manifest
from drfhq_lib.errors import DrfhqError
from drfhq_lib.finetune.distributed import Ranks
from drfhq_lib.infer import enhance, sharding
from drfhq_lib.infer.projection import ProjectionParams

FIELDS = ["input", "status", "reason"]


# ----------------------------------------------------------------------------- deal, merge

def test_blocks_are_runs_of_consecutive_positions():
    assert sharding.blocks(7, 3) == [range(0, 3), range(3, 6), range(6, 7)]
    assert sharding.blocks(0, 2) == []
    with pytest.raises(ValueError):
        sharding.blocks(3, 0)


def test_the_deal_by_hand():
    # blocks of 2: [0 1] [2 3] [4 5] [6]; block [2 3] has nothing to do, so the blocks that
    # do are [0 1], [4 5] (4 only: 5 is done) and [6], dealt 0, 1, 0
    pending = [True, True, False, False, True, False, True]
    assert sharding.deal(pending, 2, Ranks(0, 2)) == [[0, 1], [6]]
    assert sharding.deal(pending, 2, Ranks(1, 2)) == [[4]]
    assert sharding.deal(pending, 2, Ranks(0, 1)) == [[0, 1], [4], [6]]
    assert sharding.deal(pending, 2, Ranks(2, 3)) == [[6]]
    assert sharding.deal([False] * 4, 2, Ranks(0, 2)) == []


@pytest.mark.parametrize("world", [1, 2, 3, 5])
@pytest.mark.parametrize("size", [1, 2, 4])
def test_the_shares_are_disjoint_and_cover_every_pending_input(world, size):
    pending = [(i * 7919) % 5 != 0 for i in range(23)]  # a fixed irregular pattern
    shares = [sharding.deal(pending, size, Ranks(r, world)) for r in range(world)]
    items = [i for share in shares for block in share for i in block]
    assert sorted(items) == [i for i, p in enumerate(pending) if p]
    for share in shares:  # each block is one batch of consecutive inputs of one block
        for block in share:
            assert len({i // size for i in block}) == 1 and len(block) <= size
    counts = [len(share) for share in shares]  # round robin: no rank has two blocks more
    assert max(counts) - min(counts) <= 1


def _csv(path, rows, torn=""):
    write_manifest(path, {r["input"]: r for r in rows}, FIELDS)
    if torn:
        with open(path, "a") as f:
            f.write(torn)


def test_merge_parts_folds_every_part_into_the_manifest_once(tmp_path):
    manifest = tmp_path / "manifest.csv"
    _csv(manifest, [{"input": "a", "status": "failed", "reason": "no face"},
                    {"input": "b", "status": "ok", "reason": ""}])
    _csv(part_path(manifest, 0), [{"input": "a", "status": "ok", "reason": ""}])
    _csv(part_path(manifest, 1), [{"input": "c", "status": "ok", "reason": ""}],
         torn="d,o")  # a rank killed while writing its row
    assert part_paths(manifest) == [tmp_path / "manifest.part-00000.csv",
                                    tmp_path / "manifest.part-00001.csv"]
    rows = merge_parts(manifest, FIELDS, "input")
    expected = {"a": "ok", "b": "ok", "c": "ok"}  # the part's row is the newer one
    assert {k: r["status"] for k, r in rows.items()} == expected
    assert part_paths(manifest) == []
    lines = manifest.read_text().splitlines()
    assert lines == ["input,status,reason", "a,ok,", "b,ok,", "c,ok,"]
    assert merge_parts(manifest, FIELDS, "input") == rows  # nothing left: nothing changes
    assert manifest.read_text().splitlines() == lines


def test_merge_without_parts_or_manifest_writes_nothing(tmp_path):
    assert merge_parts(tmp_path / "manifest.csv", FIELDS, "input") == {}
    assert list(tmp_path.iterdir()) == []


def test_under_torchrun_without_the_process_group_is_an_error(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(DrfhqError, match="sharding.join"):
        sharding.current_ranks()
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert sharding.current_ranks() == Ranks(0, 1, 0)


# ----------------------------------------------------------------------------- end to end

STEPS, BATCH = 2, 2
PORTRAITS = ["amara_portrait.png", "ava_portrait.png", "kenji_portrait.png",
             "walter_portrait.png"]


def _one_process(inputs, out: Path) -> dict[str, dict]:
    """The job in this process, with one thread as every rank has."""
    nets = enhance.load_generators("miniworld", "miniworld", "cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return enhance.enhance_files([Path(p) for p in inputs], out, nets,
                                     ProjectionParams(steps=STEPS), BATCH, progress=False)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """Five inputs (four portraits and a file that is no image), in blocks of 2:
    [0 1] [2 3] [4], and the one-process run of the job."""
    root = tmp_path_factory.mktemp("sharded")
    bad = root / "not_an_image.png"
    bad.write_text("hello")
    inputs = [str(enhance.SAMPLES / name) for name in PORTRAITS] + [str(bad)]
    _one_process(inputs, root / "one")
    return root, inputs


def _env() -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    return {**env, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _torchrun(inputs, out: Path, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "drfhq_lib", "enhance", *inputs, "--out", str(out), "--real", "miniworld",
           "--rendering", "miniworld", "--init", "w_avg", "--steps", str(STEPS),
           "--batch", str(BATCH), "--device", "cpu"]
    return subprocess.Popen(cmd, env=_env(), stdout=open(log, "w"), stderr=subprocess.STDOUT)


def _files(out: Path) -> dict[str, bytes]:
    """Every visible output file (images, comparison strips, latents) by path under ``out``."""
    return {str(p.relative_to(out)): p.read_bytes()
            for pattern in ("*.png", "compare/*.png", "latents/*.npz")
            for p in sorted(out.glob(pattern))}


def _rows(out: Path) -> dict[str, dict]:
    """The manifest's rows without the timings, outputs relative to ``out``."""
    with open(out / "manifest.csv", newline="") as f:
        rows = {r["input"]: r for r in csv.DictReader(f)}
    for r in rows.values():
        del r["seconds"]
        r["output"] = str(Path(r["output"]).relative_to(out)) if r["output"] else ""
    return rows


def _wait(proc: subprocess.Popen, log: Path, timeout: float = 240) -> int:
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"torchrun did not finish in {timeout} s:\n{log.read_text()[-3000:]}")


@pytest.mark.slow
def test_two_gloo_processes_write_what_one_process_writes(job):
    root, inputs = job
    one, two = root / "one", root / "two"
    rc = _wait(_torchrun(inputs, two, root / "two.log"), root / "two.log")
    log = (root / "two.log").read_text()
    assert rc == 1, log  # the input that is no image failed: exit 1, as one process
    assert "2 processes (torchrun)" in log and "5 inputs: 1 failed, 4 ok" in log
    reference = _files(one)
    assert len(reference) == 12  # 4 composites, 4 comparison strips, 4 latents
    assert _files(two) == reference
    assert _rows(two) == _rows(one)
    assert [_rows(two)[p]["status"] for p in inputs] == ["ok"] * 4 + ["failed"]
    assert part_paths(two / "manifest.csv") == []  # merged into the one manifest


def _rank_pid(parent: int, rank: int, timeout: float = 120) -> int:
    """The pid of torchrun's worker of ``rank`` (its environment says RANK)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
                env = (proc / "environ").read_bytes().split(b"\0")
            except (OSError, IndexError, ValueError):
                continue
            if ppid == parent and f"RANK={rank}".encode() in env:
                return int(proc.name)
        time.sleep(0.1)
    pytest.fail(f"no worker of rank {rank} under torchrun {parent}")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc")
def test_a_killed_rank_loses_only_its_items_in_flight_and_the_rerun_completes(job):
    root, inputs = job
    one, out = root / "one", root / "killed"
    reference = _files(one)
    log = root / "killed.log"
    proc = _torchrun(inputs, out, log)
    rank1 = _rank_pid(proc.pid, 1)
    part = part_path(out / "manifest.csv", 1)
    deadline = time.monotonic() + 180
    # rank 1's share is block [2 3]: kill it once its first input has its row
    while not (part.exists() and len(part.read_text().splitlines()) >= 2):
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.02)
    os.kill(rank1, signal.SIGKILL)
    assert _wait(proc, log) != 0  # torchrun stops the other rank and fails
    done = _files(out)
    assert "kenji_portrait.png" in done  # the input rank 1 finished is kept
    assert done.items() <= reference.items()  # every visible file complete: nothing half-written
    assert part_paths(out / "manifest.csv")  # the parts wait for the rerun's merge

    _one_process(inputs, out)  # the rerun, here with one process, merges the parts first
    assert _files(out) == reference
    rows, expected = _rows(out), _rows(one)
    assert rows.keys() == expected.keys() and part_paths(out / "manifest.csv") == []
    for key, row in rows.items():  # a row lost with its rank reads 'exists'; else the same
        if row["status"] == "exists":
            assert expected[key]["status"] == "ok" and row["output"] == expected[key]["output"]
        else:
            assert row == expected[key]
    assert rows[inputs[2]]["status"] == "ok"
    assert {r["status"] for r in rows.values()} <= DONE_STATUSES | {"failed"}
    assert not [p for p in out.rglob(".*.tmp")]  # the killed run's temporaries are gone
