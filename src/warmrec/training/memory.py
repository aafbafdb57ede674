"""Keep freed memory in the process for reuse (glibc ``mallopt``), for training loops on CPU.

A CPU training step allocates and frees the same few large tensors over and over (a GRU4Rec
step on a 121K-item catalogue: a dozen ``[256, 2304]`` float buffers, 2.4 MB each). glibc
serves blocks above its mmap threshold with a fresh ``mmap`` and returns them with ``munmap``,
and trims the top of the heap whenever more than its trim threshold is free: either way the
next step's buffer comes back as new pages that the kernel must fault in and zero. PyTorch's
CPU tuning guide recommends a caching allocator (jemalloc, tcmalloc) for this; without one, two
``mallopt`` settings get most of the effect: serve blocks up to 32 MiB from the heap and never
trim it below 256 MiB. Measured on nowplaying-1m (GRU4Rec, BPR-max, 256 lanes, one thread):
17.5 -> 15.0 CPU ms per full step (``benchmarks/results/gru4rec_speed.md``).

The cost: the process keeps up to its peak heap after training (freed memory is reused, not
returned). Settings are per process and made once; ``TrainerConfig.reuse_memory=False`` skips
them, and they do nothing off glibc (macOS, Windows, musl).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import platform

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20
"""Blocks up to this size come from the heap (glibc's largest allowed mmap threshold on 64-bit)."""
TRIM_THRESHOLD = 256 << 20
"""Free memory at the top of the heap kept before glibc trims it."""

_done: bool | None = None


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds once per process (see the module docstring).
    Returns whether the settings are in force (False off glibc or when ``mallopt`` refused)."""
    global _done
    if _done is not None:
        return _done
    _done = False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
        ok = libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and ok
    except (OSError, AttributeError) as exc:  # no libc to load, or no mallopt in it
        log.debug("mallopt unavailable: %s", exc)
        return False
    _done = ok
    return ok


def peak_rss_mb() -> float:
    """Peak resident memory of this process and of its finished children, in MiB (the larger of
    the two: ``getrusage`` keeps each one's maximum)."""
    import resource
    import sys

    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    scale = (
        1 / 1024 if sys.platform != "darwin" else 1 / 1024 / 1024
    )  # KiB on Linux, bytes on macOS
    return max(own, kids) * scale
