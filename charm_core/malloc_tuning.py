"""Keep freed activation buffers in the process heap (glibc) instead of returning them to the OS.

glibc serves large allocations (above a dynamic threshold of at most 32 MiB) with fresh mmap()s and
trims the heap top on free, so every forward pass of a CNN/transformer on CPU page-faults its
activation buffers in again. Page faults are expensive in VMs: on the 2-core development VM this
doubled or tripled the cost of elementwise ops. Raising both thresholds keeps the pages mapped; the
price is that the process keeps its peak heap size (`release_freed_memory` gives it back on demand,
e.g. when a node drops its model). Process-wide, so call it from inference processes (the ROS node,
benchmarks), not from a library import.
"""
from __future__ import annotations

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_LIMIT = 1 << 30  # 1 GiB: above any single activation of the models here


def retain_freed_memory() -> bool:
    """Apply the setting; False where the C library is not glibc (nothing changed)."""
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _LIMIT)) and bool(mallopt(_M_TRIM_THRESHOLD, _LIMIT))


def release_freed_memory() -> bool:
    """Hand the heap's free pages back to the OS now (glibc malloc_trim), whatever the thresholds above:
    a process that drops its model (a deactivated node) shrinks at once instead of keeping its peak.
    False where the C library is not glibc."""
    name = ctypes.util.find_library("c")
    try:
        malloc_trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError, TypeError):
        return False
    malloc_trim(0)
    return True
