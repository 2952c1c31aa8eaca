"""What every SQL span backend shares: the query types, the row layout, and the SQL text.

The SQLite and PostgreSQL span stores keep the same tables (``spans``, ``span_tags``,
``operations``, ``meta``; see :mod:`pilotfish.telemetry.store`) and ask them the same
questions. What differs is only where the tables live (``ns``: "" in SQLite's own file,
``pilotfish_traces.`` in PostgreSQL) and how a statement marks its parameters (``mark``:
``?`` for sqlite3, ``%s`` for psycopg); the builders here take both, so a search, a listing
or a retention step is written once. Ordering that depends on a collation (service and
operation names) is done here in Python, so both backends list names in the same byte order
whatever the database's locale.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pilotfish.telemetry.convert import dedupe_span_ids
from pilotfish.telemetry.model import Log, Span, TagValue

#: The columns a span is read back from, in :func:`decode_span`'s order (then ``body``).
SPAN_COLUMNS = "trace_id, span_id, parent_id, service, operation, kind, start_us, duration_us"
#: Rows scanned per step while looking for the size cutoff.
CUTOFF_PAGE = 5000


@dataclass(frozen=True, slots=True)
class TraceQuery:
    """Jaeger's trace search: every condition holds on one span of a matching trace."""

    service: str
    start_us: int
    end_us: int
    operation: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    min_duration_us: int | None = None
    max_duration_us: int | None = None
    limit: int = 100


@dataclass(frozen=True, slots=True)
class Dependency:
    parent: str
    child: str
    call_count: int


@dataclass(frozen=True, slots=True)
class RetentionResult:
    deleted: int
    stored_bytes: int


# --- writing ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Batch:
    """Spans ready to insert. ``rows``: one tuple per span, ``(trace_id, span_id, parent_id,
    service, operation, kind, start_us, duration_us, size, body)``; ``tags``: ``(index of the
    span in rows, key, value)``, each once; ``operations``: ``(service, operation, kind,
    last start)`` sorted, so concurrent writers lock them in one order; ``size``: the sum."""

    rows: list[tuple[Any, ...]]
    tags: list[tuple[int, str, str]]
    operations: list[tuple[str, str, str, int]]
    size: int


def tag_text(value: TagValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def encode_body(span: Span) -> str:
    body: dict[str, Any] = {"t": span.tags}
    if span.process_tags:
        body["p"] = span.process_tags
    if span.logs:
        body["l"] = [[log.timestamp_us, log.fields] for log in span.logs]
    if span.links:
        body["r"] = span.links
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def batch(spans: Sequence[Span]) -> Batch:
    rows: list[tuple[Any, ...]] = []
    tags: dict[tuple[int, str, str], None] = {}
    operations: dict[tuple[str, str, str], int] = {}
    total = 0
    for index, span in enumerate(spans):
        body = encode_body(span)
        size = len(body) + len(span.operation) + len(span.service) + 80
        total += size
        rows.append(
            (
                span.trace_id,
                span.span_id,
                span.parent_id,
                span.service,
                span.operation,
                span.kind,
                span.start_us,
                span.duration_us,
                size,
                body,
            )
        )
        for kept in (span.tags, span.process_tags):
            for name, value in kept.items():
                tags[(index, name, tag_text(value))] = None
        op = (span.service, span.operation, span.kind)
        if operations.get(op, -1) < span.start_us:
            operations[op] = span.start_us
    ops = sorted((*key, last) for key, last in operations.items())
    return Batch(rows, list(tags), ops, total)


def decode_span(row: Sequence[Any]) -> Span:
    """A span from ``SELECT {SPAN_COLUMNS}, body``."""
    body = json.loads(row[8])
    return Span(
        trace_id=row[0],
        span_id=row[1],
        parent_id=row[2],
        service=row[3],
        operation=row[4],
        start_us=row[6],
        duration_us=row[7],
        kind=row[5],
        tags=body.get("t", {}),
        process_tags=body.get("p", {}),
        logs=[Log(ts, fields) for ts, fields in body.get("l", [])],
        links=[(t, s) for t, s in body.get("r", [])],
    )


# --- reading ----------------------------------------------------------------------------------


def services_sql(ns: str) -> str:
    return f"SELECT DISTINCT service FROM {ns}operations"


def operations_sql(ns: str, mark: str, service: str, kind: str | None) -> tuple[str, list[Any]]:
    sql = f"SELECT DISTINCT operation, kind FROM {ns}operations WHERE service = {mark}"
    args: list[Any] = [service]
    if kind:
        sql += f" AND kind = {mark}"
        args.append(kind)
    return sql, args


def trace_search_sql(ns: str, mark: str, query: TraceQuery) -> tuple[str, list[Any]]:
    """Trace ids matching ``query`` (every condition on one span), the newest first."""
    sql = [f"SELECT trace_id, MAX(start_us) AS newest FROM {ns}spans s WHERE service = {mark}"]
    args: list[Any] = [query.service]
    if query.operation:
        sql.append(f"AND operation = {mark}")
        args.append(query.operation)
    sql.append(f"AND start_us >= {mark} AND start_us <= {mark}")
    args += [query.start_us, query.end_us]
    if query.min_duration_us is not None:
        sql.append(f"AND duration_us >= {mark}")
        args.append(query.min_duration_us)
    if query.max_duration_us is not None:
        sql.append(f"AND duration_us <= {mark}")
        args.append(query.max_duration_us)
    for key, value in query.tags.items():
        sql.append(
            f"AND EXISTS (SELECT 1 FROM {ns}span_tags t WHERE t.span = s.id"
            f" AND t.key = {mark} AND t.value = {mark})"
        )
        args += [key, value]
    sql.append(f"GROUP BY trace_id ORDER BY newest DESC, trace_id LIMIT {mark}")
    args.append(max(1, query.limit))
    return " ".join(sql), args


def dependencies_sql(ns: str, mark: str) -> str:
    """The spans of every trace with a span started in ``[start, end]``, by trace."""
    return (
        f"SELECT trace_id, span_id, parent_id, service, kind FROM {ns}spans"
        f" WHERE trace_id IN (SELECT trace_id FROM {ns}spans"
        f"   WHERE start_us >= {mark} AND start_us <= {mark})"
        " ORDER BY trace_id"
    )


def count_dependencies(rows: Iterable[Sequence[Any]]) -> list[Dependency]:
    """Calls between services from :func:`dependencies_sql`'s rows: a span whose parent was
    reported by another service."""
    counts: dict[tuple[str, str], int] = {}

    def count(trace: list[Span]) -> None:
        spans = dedupe_span_ids(trace)
        service_of = {s.span_id: s.service for s in spans}
        for span in spans:
            parent = service_of.get(span.parent_id)
            if parent is not None and parent != span.service:
                counts[(parent, span.service)] = counts.get((parent, span.service), 0) + 1

    current: str | None = None
    trace: list[Span] = []
    for trace_id, span_id, parent_id, service, kind in rows:
        if trace_id != current:
            count(trace)
            current, trace = trace_id, []
        trace.append(Span(trace_id, span_id, parent_id, service, "", 0, 0, kind))
    count(trace)
    return [Dependency(p, c, n) for (p, c), n in sorted(counts.items())]


# --- retention --------------------------------------------------------------------------------


def bytes_sql(ns: str) -> str:
    return f"SELECT value FROM {ns}meta WHERE name = 'bytes'"


def cutoff_page_sql(ns: str, mark: str) -> str:
    return f"SELECT id, size FROM {ns}spans WHERE id > {mark} ORDER BY id LIMIT {CUTOFF_PAGE}"


def size_cutoff(page: Callable[[int], Sequence[Sequence[Any]]], stored: int, max_bytes: int) -> int:
    """The highest arrival id to delete, oldest arrivals first, so that ``stored`` bytes go down
    to 90% of ``max_bytes``; 0 (nothing) while ``stored`` is at most ``max_bytes``.
    ``page(after)`` returns :func:`cutoff_page_sql`'s ``(id, size)`` rows."""
    if stored <= max_bytes:
        return 0
    to_free = stored - max_bytes * 9 // 10
    freed, cutoff = 0, 0
    while freed < to_free:
        rows = page(cutoff)
        if not rows:
            break
        for span_id, size in rows:
            freed += size
            cutoff = span_id
            if freed >= to_free:
                break
    return int(cutoff)


def orphan_operations_sql(ns: str) -> str:
    """Forget the operations no stored span has any more."""
    return (
        f"DELETE FROM {ns}operations WHERE NOT EXISTS (SELECT 1 FROM {ns}spans s"
        f" WHERE s.service = {ns}operations.service AND s.operation = {ns}operations.operation)"
    )
