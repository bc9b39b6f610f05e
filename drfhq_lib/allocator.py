"""CPU memory policy for long tensor jobs (projection, fine-tuning, benchmarks).

glibc serves every allocation above its largest mmap threshold (32 MiB on 64-bit Linux) with
fresh pages from the kernel and hands them back on free. A 256 px generator step at batch 8
allocates dozens of activations that size, so every step page-faults and zero-fills them again:
measured on a 2-core CPU, a 128-channel 128 px convolution costs 35 ms per image at batch 1 and
45-61 ms at batch 4-8 with the default policy, 35-37 ms at every batch with this one. That
penalty is why batching lost to one-at-a-time projection on CPU. ``keep_freed_memory`` makes
glibc serve large blocks from the heap and keep freed memory for reuse (what jemalloc or
tcmalloc, recommended by PyTorch's CPU tuning guide, do by default). It is process-wide: the
resident size stays at its peak until the process ends.
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
