"""The C heap's free memory given back after a burst (glibc only).

What glibc keeps depends on the heap's history (a long-lived test worker's holes take the
small objects that would pin the freed ones), so the real-memory check runs in a fresh
interpreter, and the trimmer's rule (once per burst) is checked against given figures."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from pilotfish import heap

pytestmark = pytest.mark.skipif(heap.free_bytes() is None, reason="not glibc")

MB = 1024 * 1024

BURST = """
import json
from pathlib import Path
from pilotfish import heap

def rss_mb():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024

# ~128 MB allocated and freed in the heap, between small objects that stay (so the heap's
# top is not free and glibc keeps what was freed).
big, small = [], []
for i in range(2000):
    big.append(bytes([i % 256]) * (64 * 1024))
    small.append(bytes([i % 256]) * 600)
del big
free, before = heap.free_bytes(), rss_mb()
trimmed = heap.trim()
print(json.dumps({"free": free, "before": before, "after": rss_mb(), "trimmed": trimmed,
                  "kept": len(small)}))
"""


def test_trim_gives_the_freed_memory_back() -> None:
    out = subprocess.run(
        [sys.executable, "-c", BURST], capture_output=True, text=True, check=True, timeout=60
    )
    got = json.loads(out.stdout)
    assert got["free"] > 100 * MB, got
    assert got["trimmed"], got
    assert got["after"] < got["before"] - 64, got
    assert got["kept"] == 2000


async def test_trim_heap_trims_once_per_burst(monkeypatch: pytest.MonkeyPatch) -> None:
    # The heaps' free bytes at each look: a burst frees 100 MB, what was given back still
    # counts as free, part is reused, then a second burst frees 80 MB more.
    figures = [0, 100 * MB, 100 * MB, 100 * MB, 40 * MB, 40 * MB, 120 * MB, 120 * MB]
    seen: list[int] = []
    trims: list[int] = []
    stop = asyncio.Event()

    def free_bytes() -> int:
        value = figures[min(len(seen), len(figures) - 1)]
        seen.append(value)
        if len(seen) >= len(figures) + 4:
            stop.set()
        return value

    def trim() -> bool:
        trims.append(seen[-1])
        return True

    monkeypatch.setattr(heap, "free_bytes", free_bytes)
    monkeypatch.setattr(heap, "trim", trim)
    await asyncio.wait_for(heap.trim_heap(stop, interval=0.001, threshold=64 * MB), 10)
    # Once for the first burst (not again while the same memory stays free), once for the
    # second (it grew 80 MB past what was left after reuse).
    assert trims == [100 * MB, 120 * MB]
