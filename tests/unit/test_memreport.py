"""The opt-in memory report (``pilotfish.memreport``): its sections and files."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest
from envoy.config.cluster.v3 import cluster_pb2

from pilotfish import memreport
from pilotfish.xds.resources import CLUSTER_TYPE, ResourceCache, build_snapshot


class Held:
    """A type only this test makes, to find in the report."""


def test_off_unless_the_environment_names_a_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(memreport.ENV, raising=False)
    assert memreport.directory_from_env() is None
    monkeypatch.setenv(memreport.ENV, str(tmp_path))
    assert memreport.directory_from_env() == tmp_path


def test_report_counts_objects_and_names_who_holds_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(memreport.REFERRERS_ENV, "Held")
    holder = {"the holder": [Held() for _ in range(3)]}
    memreport.register("test part", lambda: ["part line"])
    try:
        path = memreport.write_report(tmp_path)
    finally:
        memreport._SECTIONS.pop("test part")
    text = path.read_text()
    assert path.parent == tmp_path and path.name.startswith("memory-")
    assert text.startswith("pid ") and "\nrss " in text
    assert "         3 Held\n" in text
    assert "referrers of Held (3 shown):" in text
    assert "<- dict of 1 (keys 'the holder')" in text
    assert "test part:\n  part line\n" in text
    assert "rss after malloc_trim" in text  # glibc
    assert holder


def test_report_with_tracemalloc_lists_allocation_sites(tmp_path: Path) -> None:
    tracemalloc.start(2)
    try:
        kept = [bytes(1000) + bytes([i % 256]) for i in range(2000)]
        text = memreport.report()
    finally:
        tracemalloc.stop()
    assert "MB traced" in text and "by traceback:" in text
    assert "test_memreport.py" in text
    assert kept


def test_cache_section_counts_entries_the_memo_alone_keeps() -> None:
    cache = ResourceCache()
    messages = {n: cluster_pb2.Cluster(name=n) for n in ("a", "b")}
    snapshot = build_snapshot({CLUSTER_TYPE: messages}, cache)
    assert "entries kept by the memo alone: 0 " in "\n".join(cache.describe())
    del snapshot
    lines = "\n".join(cache.describe())
    assert "entries 2:" in lines and "by type: CDS 2" in lines
    assert "entries kept by the memo alone: 2 " in lines
