"""Give the C heap's free memory back to the operating system after a burst (glibc).

A connection storm or a push to every proxy allocates hundreds of megabytes for a few seconds
(responses being serialized and written, the per-proxy work of the push). Python frees them,
but glibc's allocator keeps most of what it freed in its heaps for reuse: the resident memory
stays at the burst's high-water mark until something happens to reuse or trim it. At 1,000
proxies x 1,000 services a fresh storm left ~90 MB of such free memory behind (0.09 MB per
proxy; measured with ``malloc_trim`` called from a debugger: 490 -> 400 MB).

:func:`trim_heap` checks every few seconds how much the heaps hold free
(``mallinfo2().fordblks``) and, when that grew past a threshold, asks glibc to return it
(``malloc_trim(0)``, in a worker thread: it walks every heap). Elsewhere than glibc (musl,
macOS) it does nothing. No library on the package index does this; the two calls are glibc's
own API, reached through :mod:`ctypes`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
from functools import cache

log = logging.getLogger("pilotfish.heap")

#: Free memory in the heaps above which it is given back (bytes).
TRIM_ABOVE_BYTES = 32 * 1024 * 1024
#: How often the heaps are looked at (seconds).
TRIM_INTERVAL_S = 5.0


class MallInfo2(ctypes.Structure):
    """glibc's ``struct mallinfo2`` (glibc >= 2.33): ``arena`` (bytes from the system for
    the heaps), ``uordblks`` (in use), ``fordblks`` (free in the heaps), ``hblkhd`` (mmapped),
    ..."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


@cache
def _libc() -> ctypes.CDLL | None:
    """The C library when it is glibc with ``mallinfo2`` and ``malloc_trim``, else None."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        mallinfo2, malloc_trim = libc.mallinfo2, libc.malloc_trim
    except (OSError, AttributeError):
        return None
    mallinfo2.restype = MallInfo2
    mallinfo2.argtypes = []
    malloc_trim.restype = ctypes.c_int
    malloc_trim.argtypes = [ctypes.c_size_t]
    return libc


def mallinfo() -> MallInfo2 | None:
    """glibc's ``mallinfo2()`` (every heap, main and thread arenas); None without glibc."""
    libc = _libc()
    return None if libc is None else libc.mallinfo2()


def free_bytes() -> int | None:
    """Bytes the C heaps hold free (not in use, not given back); None without glibc."""
    info = mallinfo()
    return None if info is None else int(info.fordblks)


def trim() -> bool:
    """Give the heaps' free memory back to the system; True if some was (False without
    glibc)."""
    libc = _libc()
    return libc is not None and bool(libc.malloc_trim(0))


async def trim_heap(
    stop: asyncio.Event,
    interval: float = TRIM_INTERVAL_S,
    threshold: int = TRIM_ABOVE_BYTES,
) -> None:
    """Until ``stop`` is set: every ``interval`` seconds, trim the heaps when they hold
    ``threshold`` bytes more free than after the last trim (memory given back still counts as
    free in the heaps, so the free memory alone would trim again and again)."""
    if _libc() is None:
        log.debug("not glibc: the heap is not trimmed")
        return
    loop = asyncio.get_running_loop()
    floor = 0
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
        free = free_bytes()
        if stop.is_set() or free is None:
            continue
        floor = min(floor, free)  # reused since: what is freed next counts from there
        if free - floor < threshold:
            continue
        await loop.run_in_executor(None, trim)
        floor = free_bytes() or 0
        log.debug("heap trimmed: %d MB were free", free // (1024 * 1024))
