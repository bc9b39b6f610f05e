"""The CPU allocator policy keeps freed activations for reuse instead of page-faulting them in."""

import os
import subprocess
import sys

import pytest

PROBE = """
import resource, torch
from drfhq_lib.allocator import keep_freed_memory
print(keep_freed_memory())
x = torch.randn(8, 64, 128, 128, requires_grad=True)  # 32 MiB activations, as at batch 8
w = torch.randn(64, 64, 3, 3, requires_grad=True)
def step():
    y = torch.nn.functional.conv2d(x, w, padding=1)
    (y * y).mean().backward()
step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(4):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _probe(policy: str) -> tuple[bool, int]:
    env = {**os.environ, "DRFHQ_MALLOC": policy}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    return out[0] == "True", int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc policy")
def test_freed_large_blocks_are_reused_without_page_faults():
    applied, faults_kept = _probe("keep")
    default, faults_default = _probe("system")
    assert applied and not default
    pages_per_step = 2 * 32 * 2**20 // 4096  # the activation and its gradient
    assert faults_default > 4 * pages_per_step  # every step faults its blocks in afresh
    assert faults_kept < faults_default / 4
