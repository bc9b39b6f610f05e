"""CPU memory policy for long tensor jobs (projection, fine-tuning, benchmarks).

glibc serves every allocation above its largest mmap threshold (32 MiB on 64-bit Linux) with
fresh pages from the kernel and hands them back on free. A 256 px generator step at batch 8
allocates dozens of activations that size, so every step page-faults and zero-fills them again.
Measured with benchmarks/bench_projection.py on an idle 2-core CPU, 256 px, seconds per portrait
per 100 steps: batch 1 = 218 with either policy; batch 8 = 390 with glibc's default and 160 with
this one (a projection step at batch 4: 439 000 -> 13 000 minor page faults per portrait). So
with the default policy batching loses to one at a time on CPU, and with this one it wins.
``keep_freed_memory`` makes glibc serve large blocks from the heap and keep freed memory for
reuse (what jemalloc or tcmalloc, recommended by PyTorch's CPU tuning guide, do by default). It
is process-wide: the resident size stays at its peak until the process ends.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
OPT_OUT = "DRFHQ_MALLOC"  # set to "system" to keep glibc's defaults

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Apply the policy once per process; True when in effect (glibc), False elsewhere."""
    global _applied
    if _applied is None:
        _applied = os.environ.get(OPT_OUT, "") != "system" and _mallopt_policy()
    return _applied


def _mallopt_policy() -> bool:
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):  # not glibc (musl, macOS, Windows): nothing to tune
        return False
    if mallopt is None:
        return False
    return mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, 2**31 - 1) == 1
