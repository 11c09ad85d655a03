"""Keep a frame's large buffers in the process heap instead of a fresh ``mmap`` per frame.

glibc serves an allocation above its mmap threshold (dynamic, 128 KiB to 32 MiB) with a new
``mmap`` and gives it back with ``munmap`` when freed. A frame's tensors and output messages
are MBs each, so every frame then touches brand-new pages, and the kernel's page faults cost
as much as the work: on the project's 2-core CPU, 640x480, ``engine.infer`` bf16 took 105-120
ms with glibc's defaults and 73-84 ms with the thresholds below (two A/B runs); building and
serializing one frame's cloud and images took 13-16 ms against 2-4 ms. Freed blocks now stay
in the heap for the next frame: the resident size settles at one frame's high-water mark.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1   # glibc malloc.h
M_MMAP_THRESHOLD = -3
#: Allocations below this come from the heap: a 1920x1080 cloud (4 x float32 per point) is 32 MiB.
MMAP_THRESHOLD = 32 * 1024 * 1024
#: Free memory at the top of the heap kept rather than returned to the system.
TRIM_THRESHOLD = 256 * 1024 * 1024


def keep_large_allocations(mmap_threshold: int = MMAP_THRESHOLD, trim_threshold: int = TRIM_THRESHOLD) -> bool:
    """Raise glibc's mmap and trim thresholds for this process (bytes); idempotent. False where
    the C library is not glibc (nothing changes there)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, int(mmap_threshold))) and bool(mallopt(M_TRIM_THRESHOLD, int(trim_threshold)))
