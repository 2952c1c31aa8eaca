"""The C heap's free memory given back after a burst (glibc only)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pilotfish import heap

pytestmark = pytest.mark.skipif(heap.free_bytes() is None, reason="not glibc")

MB = 1024 * 1024


def rss_mb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
    raise AssertionError("no VmRSS")


def burst() -> list[bytes]:
    """~128 MB allocated and freed in the heap, between small objects that stay (so the heap's
    top is not free and glibc keeps what was freed); the small ones, to keep."""
    big, small = [], []
    for i in range(2000):
        big.append(bytes([i % 256]) * (64 * 1024))
        small.append(bytes([i % 256]) * 600)
    del big
    return small


def test_trim_gives_the_freed_memory_back() -> None:
    kept = burst()
    assert (heap.free_bytes() or 0) > 100 * MB
    before = rss_mb()
    assert heap.trim()
    assert rss_mb() < before - 64
    assert len(kept) == 2000


async def test_trim_heap_trims_once_per_burst(monkeypatch: pytest.MonkeyPatch) -> None:
    trims: list[int] = []
    trim = heap.trim

    def counted() -> bool:
        trims.append(rss_mb())
        return trim()

    monkeypatch.setattr(heap, "trim", counted)
    stop = asyncio.Event()
    task = asyncio.create_task(heap.trim_heap(stop, interval=0.01, threshold=64 * MB))
    kept = burst()
    before = rss_mb()
    for _ in range(500):
        if trims:
            break
        await asyncio.sleep(0.01)
    # Memory given back still counts as free in the heaps: no trim again for it.
    await asyncio.sleep(0.2)
    stop.set()
    await task
    assert len(trims) == 1
    assert rss_mb() < before - 64
    assert len(kept) == 2000
