"""Where the control plane's memory is, on demand: an opt-in report for investigating RSS.

Off unless the environment names a directory::

    PILOTFISH_MEMORY_REPORT=/tmp/mem pilotfish server ...          # then: kill -USR2 <pid>
    PYTHONTRACEMALLOC=8 PILOTFISH_MEMORY_REPORT=/tmp/mem ...       # with allocation sites

Each ``SIGUSR2`` writes ``memory-<pid>-<n>.txt`` there (``n`` counts from 1): the process's RSS;
glibc's heap (``mallinfo2``: bytes in use, free in the heap, mmapped); the live objects by
type after a full collection; when ``tracemalloc`` traces (Python's ``PYTHONTRACEMALLOC``),
the traced total and the largest allocation sites; what the parts that registered a section
(``register``: the xDS server's resource cache) say about their caches; then the RSS again
after ``malloc_trim``,
which returns free heap pages to the system: what RSS holds beyond the traced total and
goes away then was freed memory the allocator kept, not live objects.

Writing a report takes seconds at a thousand proxies (every object is visited) and trims the
heap, so it is for benchmarks and debugging, never for a serving control plane.
"""

from __future__ import annotations

import gc
import itertools
import logging
import os
import time
import tracemalloc
import types
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from pilotfish import heap as glibc_heap

log = logging.getLogger("pilotfish.memreport")

ENV = "PILOTFISH_MEMORY_REPORT"
#: Comma-separated type names: the report shows who refers to a few objects of each.
REFERRERS_ENV = "PILOTFISH_MEMORY_REPORT_REFERRERS"
_TOP = 40
#: Types with fewer live objects are left out of the counts.
_MIN_COUNT = 2


def rss_mb() -> float:
    """This process's resident set size (``VmRSS``) in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def heap() -> dict[str, float] | None:
    """glibc's ``mallinfo2`` in MB: ``arena`` (heap from the system, main and thread arenas),
    ``in_use``, ``free`` (in the heap, not returned), ``mmapped``; None off glibc."""
    info = glibc_heap.mallinfo()
    if info is None:
        return None
    mb = 1024 * 1024
    return {
        "arena": info.arena / mb,
        "in_use": info.uordblks / mb,
        "free": info.fordblks / mb,
        "mmapped": info.hblkhd / mb,
    }


def malloc_trim() -> bool:
    """Return the heap's free pages to the system (glibc); False where there is no such call."""
    if glibc_heap.mallinfo() is None:
        return False
    glibc_heap.trim()
    return True


def report() -> str:
    """The report's text (see the module docstring); trims the heap at the end."""
    started = time.monotonic()
    lines = [f"pid {os.getpid()} at {time.time():.3f}", f"rss {rss_mb():.1f} MB"]
    found = heap()
    if found is not None:
        lines.append("heap (MB): " + _heap_line(found))
    lines += _objects()
    wanted = os.environ.get(REFERRERS_ENV, "").split(",")
    if any(wanted):
        lines += _referrers({w.strip() for w in wanted if w.strip()})
    for name, section in list(_SECTIONS.items()):
        try:
            lines += [f"{name}:", *(f"  {line}" for line in section())]
        except Exception as e:  # a report never stops the process
            lines.append(f"{name}: failed: {e!r}")
    if tracemalloc.is_tracing():
        lines += _traced()
    # What the report itself allocated is freed by now: the trim shows what the heap keeps.
    gc.collect()
    trim_started = time.monotonic()
    if malloc_trim():
        took = (time.monotonic() - trim_started) * 1000
        lines.append(f"rss after malloc_trim {rss_mb():.1f} MB (the trim took {took:.0f} ms)")
        found = heap()
        if found is not None:
            lines.append("heap after malloc_trim (MB): " + _heap_line(found))
    lines.append(f"report took {time.monotonic() - started:.1f} s")
    return "\n".join(lines) + "\n"


def _heap_line(found: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.1f}" for k, v in found.items())


def _objects() -> list[str]:
    """The live objects the collector tracks, counted by type (most first)."""
    collected = gc.collect()
    objects = gc.get_objects()
    counts = Counter(type(o).__qualname__ for o in objects)
    total = len(objects)
    del objects
    lines = [f"gc: {total} tracked objects ({collected} collected just before)"]
    lines += [f"  {n:>10} {name}" for name, n in counts.most_common() if n >= _MIN_COUNT]
    return lines


def _describe(o: object) -> str:
    """A short description of a referrer: its type, and a few keys of a mapping or the
    qualified name of a function or frame."""
    kind = type(o).__qualname__
    if isinstance(o, dict):
        keys = [repr(k)[:40] for k in itertools.islice(o, 4)]
        return f"{kind} of {len(o)} (keys {', '.join(keys)})"
    if isinstance(o, (list, tuple, set, frozenset)):
        return f"{kind} of {len(o)}"
    if isinstance(o, types.FrameType):
        return f"frame {o.f_code.co_qualname} ({o.f_code.co_filename}:{o.f_lineno})"
    return f"{kind} at {id(o):#x}"


def _referrers(names: set[str], per_type: int = 12, depth: int = 4, fan_out: int = 3) -> list[str]:
    """For up to ``per_type`` live objects of each type named, who refers to them: a tree of
    referrers ``depth`` levels up, ``fan_out`` per level (modules and classes end a path)."""
    gc.collect()
    found: dict[str, list[object]] = {n: [] for n in names}
    for o in gc.get_objects():
        kind = type(o).__qualname__
        if kind in found and len(found[kind]) < per_type:
            found[kind].append(o)
    lines: list[str] = []
    # The report's own containers are never shown as referrers.
    ignore = {id(found), id(lines), *(id(v) for v in found.values())}
    for kind, objects in found.items():
        lines.append(f"referrers of {kind} ({len(objects)} shown):")
        for o in objects:
            lines.append(f"  {_describe(o)}")
            lines.extend(_tree(o, depth, fan_out, ignore, "    "))
    return lines


def _tree(o: object, depth: int, fan_out: int, ignore: set[int], indent: str) -> list[str]:
    if depth == 0:
        return []
    out: list[str] = []
    ignore.add(id(out))
    referrers = gc.get_referrers(o)
    ignore.add(id(referrers))
    shown = 0
    for r in referrers:
        if id(r) in ignore or isinstance(r, types.FrameType):
            continue
        shown += 1
        if shown > fan_out:
            continue
        out.append(f"{indent}<- {_describe(r)}")
        if not isinstance(r, (types.ModuleType, type)):
            out.extend(_tree(r, depth - 1, fan_out, ignore, indent + "  "))
    if shown > fan_out:
        out.append(f"{indent}   ... {shown - fan_out} more")
    return out


def _traced() -> list[str]:
    """tracemalloc's total and largest sites (Python's allocator only: protobuf's messages
    and gRPC allocate with malloc and are not traced)."""
    current, peak = tracemalloc.get_traced_memory()
    lines = [f"tracemalloc: {current / 2**20:.1f} MB traced (peak {peak / 2**20:.1f} MB)"]
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)]
    )
    lines.append("by line:")
    for stat in snapshot.statistics("lineno")[:_TOP]:
        lines.append(f"  {stat.size / 2**20:8.1f} MB {stat.count:>9} {stat.traceback[0]}")
    lines.append("by traceback:")
    for stat in snapshot.statistics("traceback")[:15]:
        lines.append(f"  {stat.size / 2**20:8.1f} MB in {stat.count} blocks")
        lines += [f"      {frame}" for frame in stat.traceback.format(most_recent_first=True)]
    return lines


#: name -> a function returning report lines about a part's own caches (``register``).
_SECTIONS: dict[str, Callable[[], list[str]]] = {}


def register(name: str, section: Callable[[], list[str]]) -> None:
    """Add ``section()``'s lines to every report under ``name`` (the last one registered
    under a name wins: a restarted part replaces its section)."""
    _SECTIONS[name] = section


_numbers = itertools.count(1)


def write_report(directory: Path) -> Path:
    """Write the next ``memory-<pid>-<n>.txt`` into ``directory`` (whole once it exists)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"memory-{os.getpid()}-{next(_numbers)}.txt"
    partial = path.with_suffix(".partial")
    partial.write_text(report())
    partial.rename(path)
    log.warning("memory report written to %s", path)
    return path


def directory_from_env() -> Path | None:
    """The directory ``PILOTFISH_MEMORY_REPORT`` names (None: reports are off)."""
    value = os.environ.get(ENV, "").strip()
    return Path(value) if value else None
