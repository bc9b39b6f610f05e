"""benchmarks/gpu_check.py --device cpu --quick: every check's code runs on a CPU, and the
JSON holds one row per figure the issue asks for, each consistent with the raw timings it
records (the scaling rules written out here by hand)."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check") / "check.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--quick",
                           "--json", str(out)], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(out.read_text()), proc.stdout, out


def _rows(record, check):
    return [r for r in record["rows"] if r["check"] == check]


@pytest.mark.slow
def test_every_check_has_its_rows_and_the_table_is_printed(quick):
    record, stdout, out = quick
    assert [r["check"] for r in record["rows"]] == [
        "cuda_vs_cpu", "fp16", "projection", "projection", "projection", "projection",
        "finetune", "enhance"]
    for row in record["rows"]:
        assert not row["status"].startswith("error"), row
        assert row["setting"] in stdout  # one table line per row
    assert record["quick"] is True and record["environment"]["device"] == "cpu"
    assert out.with_name(out.name + ".provenance.json").exists()


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU-only statuses")
def test_cuda_rows_are_skipped_on_a_cpu_and_their_code_still_runs(quick):
    record = quick[0]
    (same,), (fp16,) = _rows(record, "cuda_vs_cpu"), _rows(record, "fp16")
    # the CPU against itself, and fp16 inactive on a CPU (both passes fp32): exactly equal
    assert same["status"].startswith("skipped: no CUDA") and same["value"] == 0.0
    assert fp16["status"].startswith("skipped: no CUDA") and fp16["value"] == 0.0
    assert fp16["max_abs_error"] == 0.0 and fp16["dtype"] == "torch.float32"


@pytest.mark.slow
def test_projection_seconds_are_scaled_to_500_and_100_steps_per_portrait(quick):
    rows = _rows(quick[0], "projection")
    assert [(r["batch"], r["steps"]) for r in rows] == [(1, 500), (1, 100), (2, 500), (2, 100)]
    for row in rows:
        if row["value"] is None:  # no encoder-initialised projection in this checkout
            assert row["status"].startswith("not available") and row["steps"] == 100
            continue
        per_step = row["elapsed_s"] / row["timed_steps"]
        expected = (row.get("encoder_s", 0.0) + per_step * row["steps"]) / row["batch"]
        assert math.isclose(row["value"], expected, rel_tol=1e-9)
        assert row["value"] > 0


@pytest.mark.slow
def test_finetune_rate_follows_from_the_amortised_step(quick):
    (row,) = _rows(quick[0], "finetune")
    p = row["phases_s"]
    # lazy regularisation: Greg every 4 steps, Dreg every 16 (the official intervals)
    step = p["Gmain"] + p["Dmain"] + p["ema"] + p["Greg"] / 4 + p["Dreg"] / 16
    assert math.isclose(row["step_s"], step, rel_tol=1e-9)
    assert math.isclose(row["img_per_s"], 4 / row["step_s"], rel_tol=1e-9)  # quick batch 4
    assert math.isclose(row["value"], row["img_per_s"] * 3.6, rel_tol=1e-9)  # kimg per hour
    assert math.isclose(row["minutes_for_40_kimg"], 40 / row["value"] * 60, rel_tol=1e-9)


@pytest.mark.slow
def test_the_bundled_renders_are_enhanced_end_to_end(quick):
    (row,) = _rows(quick[0], "enhance")
    assert row["status"] == "ok" and row["renders"] == row["ok"] == 2
    assert 0 < row["mean_final_lpips"] < 1
