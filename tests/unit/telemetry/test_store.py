"""The span store's contract, checked against each backend: searches by each filter,
dependencies, retention by age and by size, reopening, and several instances (replicas)
writing one store at once.

The PostgreSQL run gives each test a database of its own on the session's throwaway cluster
(``tests/postgres.py``); it skips only when the PostgreSQL server binaries are missing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pilotfish.errors import StoreError
from pilotfish.telemetry.model import Span
from pilotfish.telemetry.store import DEFAULT_FILENAME, SpanStore, TraceQuery, open_span_store
from tests.postgres import PostgresCluster

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


OpenStore = Callable[[], SpanStore]


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where one test's spans live: a SQLite file, or a PostgreSQL database of its own."""
    if request.param == "sqlite":
        return f"sqlite://{tmp_path / DEFAULT_FILENAME}"
    return str(request.getfixturevalue("postgres_cluster").new_database())


@pytest.fixture
def open_store(location: str) -> Iterator[OpenStore]:
    """Opens a store instance on the test's location (each call another instance, as another
    replica would); closes them all at the end."""
    opened: list[SpanStore] = []

    def make() -> SpanStore:
        opened.append(open_span_store(location))
        return opened[-1]

    try:
        yield make
    finally:
        for store in opened:
            store.close()


@pytest.fixture
def store(open_store: OpenStore) -> SpanStore:
    s = open_store()
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


def test_services_and_operations(store: SpanStore) -> None:
    assert store.services() == ["productpage.default", "ratings.default", "reviews.default"]
    assert store.operations("productpage.default") == [
        ("GET /login", "server"),
        ("GET /productpage", "server"),
    ]
    assert store.operations("reviews.default", "client") == []


def test_find_traces_by_each_filter(store: SpanStore) -> None:
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


def test_traces_round_trip(store: SpanStore) -> None:
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


def test_dependencies(store: SpanStore) -> None:
    deps = {(d.parent, d.child): d.call_count for d in store.dependencies(T0, T0 + 100)}
    assert deps == {
        ("productpage.default", "reviews.default"): 2,
        ("reviews.default", "ratings.default"): 1,
    }
    assert store.dependencies(T0 + 1000, T0 + 2000) == []


def test_retention_by_age(store: SpanStore) -> None:
    before = store.stored_bytes()
    result = store.enforce_retention(min_start_us=T0 + 10, max_bytes=1 << 30)
    assert result.deleted == 3
    assert store.span_count() == 3
    assert 0 < result.stored_bytes < before
    assert store.find_trace_ids(q()) == [f"{3:016x}", f"{2:016x}"]
    # Services and operations with no span left disappear.
    assert store.services() == ["productpage.default", "reviews.default"]
    assert store.find_trace_ids(q(service="ratings.default")) == []


def test_retention_by_size_drops_oldest_arrivals(open_store: OpenStore) -> None:
    store = open_store()
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


def test_reopen_keeps_spans_and_size(open_store: OpenStore) -> None:
    store = open_store()
    store.write([make(1, 1, "a.ns", user="jason")])
    size = store.stored_bytes()
    store.close()
    again = open_store()
    assert again.span_count() == 1
    assert again.stored_bytes() == size
    assert again.find_trace_ids(q(service="a.ns", tags={"user": "jason"})) == [f"{1:016x}"]


def test_a_directory_means_its_traces_db_created_private(tmp_path: Path) -> None:
    store = open_span_store(tmp_path)
    store.write([make(1, 1, "a.ns")])
    store.close()
    assert (tmp_path / DEFAULT_FILENAME).stat().st_mode & 0o777 == 0o600


def test_replicas_writing_at_once_share_one_store(open_store: OpenStore) -> None:
    """Two instances (replicas) write batches concurrently, one also runs retention meanwhile;
    each sees every span the other wrote, and the size counter matches what is stored."""
    first, second = open_store(), open_store()
    errors: list[BaseException] = []

    def writer(store: SpanStore, base: int) -> None:
        try:
            for batch in range(20):
                trace = base + batch
                store.write(
                    [
                        make(trace, trace * 100 + i, f"svc{i % 3}.ns", op=f"op{i % 2}", tag=str(i))
                        for i in range(25)
                    ]
                )
                if batch % 5 == 4:
                    store.enforce_retention(min_start_us=0, max_bytes=1 << 40)
        except BaseException as exc:  # reported below, from the test's thread
            errors.append(exc)

    threads = [
        threading.Thread(target=writer, args=(first, 1)),
        threading.Thread(target=writer, args=(second, 1001)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert first.span_count() == second.span_count() == 2 * 20 * 25
    assert first.services() == second.services() == ["svc0.ns", "svc1.ns", "svc2.ns"]
    one_per_batch = q(service="svc0.ns", start_us=0, end_us=T0 * 2, tags={"tag": "0"}, limit=100)
    assert sorted(second.find_trace_ids(one_per_batch)) == sorted(
        f"{t:016x}" for t in [*range(1, 21), *range(1001, 1021)]
    )
    written = first.stored_bytes()
    # Retention by size on one replica frees for both: the counter was exact.
    result = second.enforce_retention(min_start_us=0, max_bytes=written // 2)
    assert 0 < result.deleted < 1000
    assert first.stored_bytes() == result.stored_bytes <= written // 2 * 9 // 10
    assert first.span_count() == 1000 - result.deleted


def test_a_postgres_store_lives_beside_the_config_store(
    postgres_cluster: PostgresCluster,
) -> None:
    """The spans' tables are in a schema of their own in the config store's database; a
    database whose span schema is newer than this build knows is refused."""
    import psycopg

    from pilotfish.config.store.postgres import PostgresStore
    from pilotfish.telemetry.postgres import SCHEMA, SCHEMA_VERSION

    url = postgres_cluster.new_database()
    config = PostgresStore(url)
    spans = open_span_store(url)
    spans.write([make(1, 1, "a.ns")])
    assert config.revision() == 0
    spans.close()
    config.close()
    with psycopg.connect(url, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables"
            " WHERE table_name LIKE 'pilotfish%%' OR table_schema = %s ORDER BY 1, 2",
            (SCHEMA,),
        ).fetchall()
        assert {t for s, t in tables if s == SCHEMA} == {
            "migrations", "meta", "operations", "span_tags", "spans",
        }  # fmt: skip
        assert {t for s, t in tables if s != SCHEMA} >= {"pilotfish_objects", "pilotfish_meta"}
        conn.execute(f"INSERT INTO {SCHEMA}.migrations (version) VALUES ({SCHEMA_VERSION + 1})")
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}"):
        open_span_store(url)


def test_unknown_backends_are_refused() -> None:
    with pytest.raises(ValueError, match="scheme"):
        open_span_store("mongo://x")


async def test_a_failing_store_answers_503_with_the_reason(location: str) -> None:
    """The query API over a store that cannot answer (here: closed) says so, in Jaeger's
    error shape, instead of a bare server error."""
    from aiohttp.test_utils import TestClient, TestServer

    from pilotfish.telemetry.query import query_app

    store = open_span_store(location)
    store.write([make(1, 1, "a.ns")])
    client = TestClient(TestServer(query_app(store)))
    await client.start_server()
    try:
        assert (await (await client.get("/api/services")).json())["data"] == ["a.ns"]
        store.close()
        response = await client.get("/api/services")
        assert response.status == 503
        assert "the span store failed" in (await response.json())["errors"][0]["msg"]
    finally:
        await client.close()
