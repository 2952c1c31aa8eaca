"""The SQLite span store: searches by each filter, dependencies, and retention."""

from __future__ import annotations

from pathlib import Path

import pytest

from pilotfish.telemetry.model import Span
from pilotfish.telemetry.store import (
    DEFAULT_FILENAME,
    SqliteSpanStore,
    TraceQuery,
    open_span_store,
)

T0 = 1_700_000_000_000_000


def make(
    trace: int,
    span: int,
    service: str,
    *,
    parent: int = 0,
    op: str = "GET /",
    start: int = T0,
    duration: int = 1000,
    kind: str = "server",
    **tags: str,
) -> Span:
    return Span(
        trace_id=f"{trace:016x}",
        span_id=f"{span:016x}",
        parent_id=f"{parent:016x}" if parent else "",
        service=service,
        operation=op,
        start_us=start,
        duration_us=duration,
        kind=kind,
        tags=dict(tags),
        process_tags={"istio.namespace": service.split(".")[-1]},
    )


@pytest.fixture
def store(tmp_path: Path) -> SqliteSpanStore:
    s = SqliteSpanStore(tmp_path / "traces.db")
    s.write(
        [
            make(1, 1, "productpage.default", op="GET /productpage", duration=50_000),
            make(1, 2, "reviews.default", parent=1, op="GET /reviews", duration=20_000),
            make(1, 3, "ratings.default", parent=2, op="GET /ratings", duration=5_000),
            make(2, 4, "productpage.default", op="GET /productpage", start=T0 + 10, duration=900),
            make(2, 5, "reviews.default", parent=4, op="GET /reviews", start=T0 + 11, error="true"),
            make(3, 6, "productpage.default", op="GET /login", start=T0 + 20, user="jason"),
        ]
    )
    return s


def q(**kw: object) -> TraceQuery:
    base: dict[str, object] = {"service": "productpage.default", "start_us": T0, "end_us": T0 + 100}
    return TraceQuery(**(base | kw))  # type: ignore[arg-type]


def test_services_and_operations(store: SqliteSpanStore) -> None:
    assert store.services() == ["productpage.default", "ratings.default", "reviews.default"]
    assert store.operations("productpage.default") == [
        ("GET /login", "server"),
        ("GET /productpage", "server"),
    ]
    assert store.operations("reviews.default", "client") == []


def test_find_traces_by_each_filter(store: SqliteSpanStore) -> None:
    t1, t2, t3 = (f"{i:016x}" for i in (1, 2, 3))
    assert store.find_trace_ids(q()) == [t3, t2, t1]  # most recent first
    assert store.find_trace_ids(q(limit=2)) == [t3, t2]
    assert store.find_trace_ids(q(operation="GET /productpage")) == [t2, t1]
    assert store.find_trace_ids(q(min_duration_us=10_000)) == [t1]
    assert store.find_trace_ids(q(max_duration_us=1000)) == [t3, t2]
    assert store.find_trace_ids(q(start_us=T0 + 5, end_us=T0 + 15)) == [t2]
    assert store.find_trace_ids(q(tags={"user": "jason"})) == [t3]
    assert store.find_trace_ids(q(service="reviews.default", tags={"error": "true"})) == [t2]
    # Process tags are searchable too; every condition holds on one span.
    assert store.find_trace_ids(q(tags={"istio.namespace": "default", "user": "jason"})) == [t3]
    assert store.find_trace_ids(q(tags={"error": "true"})) == []
    assert store.find_trace_ids(q(service="nobody")) == []


def test_traces_round_trip(store: SqliteSpanStore) -> None:
    found = store.traces([f"{1:016x}", "ffff"])
    assert list(found) == [f"{1:016x}"]
    spans = found[f"{1:016x}"]
    assert [s.service for s in spans] == [
        "productpage.default",
        "reviews.default",
        "ratings.default",
    ]
    assert spans[1].parent_id == f"{1:016x}"
    assert spans[0].process_tags == {"istio.namespace": "default"}


def test_dependencies(store: SqliteSpanStore) -> None:
    deps = {(d.parent, d.child): d.call_count for d in store.dependencies(T0, T0 + 100)}
    assert deps == {
        ("productpage.default", "reviews.default"): 2,
        ("reviews.default", "ratings.default"): 1,
    }
    assert store.dependencies(T0 + 1000, T0 + 2000) == []


def test_retention_by_age(store: SqliteSpanStore) -> None:
    before = store.stored_bytes()
    result = store.enforce_retention(min_start_us=T0 + 10, max_bytes=1 << 30)
    assert result.deleted == 3
    assert store.span_count() == 3
    assert 0 < result.stored_bytes < before
    assert store.find_trace_ids(q()) == [f"{3:016x}", f"{2:016x}"]
    # Services and operations with no span left disappear.
    assert store.services() == ["productpage.default", "reviews.default"]
    assert store.find_trace_ids(q(service="ratings.default")) == []


def test_retention_by_size_drops_oldest_arrivals(tmp_path: Path) -> None:
    store = SqliteSpanStore(tmp_path / "t.db")
    for batch in range(10):
        store.write([make(batch + 1, batch * 100 + i + 1, "a.ns", op="x" * 200) for i in range(50)])
    total = store.stored_bytes()
    result = store.enforce_retention(min_start_us=0, max_bytes=total // 2)
    assert result.stored_bytes <= total // 2 * 9 // 10
    assert store.span_count() == 500 - result.deleted
    kept = store.traces([f"{i:016x}" for i in range(1, 11)])
    assert f"{1:016x}" not in kept and f"{10:016x}" in kept
    # Under the limit, nothing more goes.
    assert store.enforce_retention(min_start_us=0, max_bytes=total).deleted == 0


def test_reopen_keeps_spans_and_size(tmp_path: Path) -> None:
    store = open_span_store(tmp_path)
    store.write([make(1, 1, "a.ns")])
    size = store.stored_bytes()
    store.close()
    again = open_span_store(f"sqlite://{tmp_path / DEFAULT_FILENAME}")
    assert again.span_count() == 1
    assert again.stored_bytes() == size
    again.close()
    assert (tmp_path / DEFAULT_FILENAME).stat().st_mode & 0o777 == 0o600


def test_unknown_backends_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="PostgreSQL"):
        open_span_store("postgresql://db/traces")
    with pytest.raises(ValueError, match="scheme"):
        open_span_store("mongo://x")
