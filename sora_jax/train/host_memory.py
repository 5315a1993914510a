"""Keeps freed host memory in the process for the next step, instead of returning it to the OS.

XLA:CPU allocates each execution's temporary buffer (a train step's activations: 1.07 GB for the
6-layer, 384-wide benchmark LM at batch 16 x 256) with malloc and frees it when the step ends.
glibc serves an allocation that large with a fresh mmap and unmaps it on free, so every step
faults the whole buffer back in page by page, and the kernel zeroes each page: 281,000 page
faults and 0.4 s of system time per 1.4 s step on the 2-core test machine.

Two malloc settings keep large blocks in the heap: no mmap for them (M_MMAP_MAX = 0) and no
trimming of the heap's top (M_TRIM_THRESHOLD = -1). They hold for the main arena only: the heaps
of glibc's other arenas (those of other threads) are capped at 64 MB, and larger blocks are
mapped for them whatever M_MMAP_MAX says. XLA:CPU runs a program on its own dispatch thread, so
the third setting runs single-device programs on the calling thread instead
(jax_cpu_enable_async_dispatch off), whose allocations come from the main arena. The benchmark LM:
1,410 -> 1,196 ms per step, 0 page faults.

Not done instead: one malloc arena for every thread (M_ARENA_MAX = 1) also keeps the buffer, but
every thread then takes the same malloc lock: the benchmark LM at 1,300 ms, the demo 2x slower.

The cost: the process keeps its peak host memory until it exits (a training process reaches its
peak every step anyway), and on CPU Python waits for each program instead of queueing the next
(a train loop waits for the step's loss to log it regardless). Set before the runtime starts.
"""

from __future__ import annotations

import ctypes
import logging
import sys

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc <malloc.h>


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
    """Applies the settings above where the C library is glibc; returns whether they all took.

    Must run before JAX creates its CPU backend (the dispatch setting is read then)."""
    libc = _glibc()
    if libc is None:
        log.info("host memory: not glibc; large freed blocks go back to the OS as usual")
        return False
    ok = all(libc.mallopt(option, value) == 1 for option, value in ((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, -1)))
    if not ok:
        log.warning("host memory: glibc refused a malloc setting; large blocks may be mapped afresh every step")
        return False
    import jax

    jax.config.update("jax_cpu_enable_async_dispatch", False)
    return True
