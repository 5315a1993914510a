"""Keeps freed host memory in the process for the next step, instead of returning it to the OS.

XLA:CPU allocates each execution's temporary buffer (a train step's activations: 1.07 GB for the
6-layer, 384-wide benchmark LM at batch 16 x 256) with malloc and frees it when the step ends.
glibc serves an allocation that large with a fresh mmap and unmaps it on free, so every step
faults the whole buffer back in page by page, and the kernel zeroes each page: 281,000 page
faults and 0.45 s of system time per step on the 2-core test machine, the step 1,416 -> 1,308 ms.

Three malloc settings make the buffer come from the heap and stay there: no mmap for large
blocks (M_MMAP_MAX = 0), one arena (M_ARENA_MAX = 1; the other arenas' heaps are capped at 64 MB,
and glibc maps larger blocks for them whatever M_MMAP_MAX says), and no trimming of the heap's
top (M_TRIM_THRESHOLD = -1). The cost: the process keeps its peak host memory until it exits,
which a training process reaches every step anyway. They must be set before the accelerator
runtime starts its threads (threads keep the arena they first used).

Opt-in (config.train.reuse_host_memory): with one arena, every thread (XLA's pool, data loading,
checkpointing, metrics) takes the same malloc lock, and configs/demo.py (a small model, many
small programs) steps 2x slower: 12 s per 50 steps against 6. M_ARENA_MAX alone does that;
M_MMAP_MAX and M_TRIM_THRESHOLD alone do not, but without the one arena they leave the large
buffer mapped afresh every step. Worth it when a step's temporaries run to hundreds of MB.
"""

from __future__ import annotations

import ctypes
import logging
import sys

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -4, -8  # glibc <malloc.h>


def _glibc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    # musl and others have no gnu_get_libc_version and do not know these settings.
    if not (hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "mallopt")):
        return None
    return libc


def reuse_freed_memory() -> bool:
    """Applies the settings above where the C library is glibc; returns whether all three took."""
    libc = _glibc()
    if libc is None:
        log.info("host memory: not glibc; large freed blocks go back to the OS as usual")
        return False
    ok = all(libc.mallopt(option, value) == 1
             for option, value in ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, -1)))
    if not ok:
        log.warning("host memory: glibc refused a malloc setting; large blocks may be mapped afresh every step")
    return ok
