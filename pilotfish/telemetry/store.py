"""Where spans are kept: the :class:`SpanStore` interface and its SQLite backend.

The default is a SQLite file of its own in the data directory (``traces.db``, beside the
config store's ``config.db``), in WAL mode with ``synchronous=NORMAL``: spans are telemetry, a
crash may lose the last batch but never corrupts the file. Layout (``PRAGMA user_version`` 1)::

    spans(id INTEGER PRIMARY KEY, trace_id, span_id, parent_id, service, operation, kind,
          start_us, duration_us, size, body JSON)      one row per span, id = arrival order
        indexes: (trace_id), (service, start_us), (service, operation, start_us), (start_us)
    span_tags(span, key, value) PRIMARY KEY (span, key, value)   span and process tags, as text
    operations(service, operation, kind, last_us)   what /api/services and operations list
    meta(name, value)                               'bytes': the stored spans' total size

Retention (:meth:`SpanStore.enforce_retention`) deletes spans that started before the age
limit, then the oldest arrivals until the stored size is under the size limit, and gives the
freed pages back to the file system (``auto_vacuum=INCREMENTAL``).

A second backend (the shared PostgreSQL of scaled-out control planes) implements the same
interface; :func:`open_span_store` is the one place that maps a URL to a backend.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from pilotfish.telemetry.convert import dedupe_span_ids
from pilotfish.telemetry.model import Log, Span, TagValue

DEFAULT_FILENAME = "traces.db"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spans (
    id INTEGER PRIMARY KEY,
    trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL,
    parent_id TEXT NOT NULL,
    service TEXT NOT NULL,
    operation TEXT NOT NULL,
    kind TEXT NOT NULL,
    start_us INTEGER NOT NULL,
    duration_us INTEGER NOT NULL,
    size INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS spans_by_trace ON spans (trace_id);
CREATE INDEX IF NOT EXISTS spans_by_service ON spans (service, start_us);
CREATE INDEX IF NOT EXISTS spans_by_operation ON spans (service, operation, start_us);
CREATE INDEX IF NOT EXISTS spans_by_start ON spans (start_us);
CREATE TABLE IF NOT EXISTS span_tags (
    span INTEGER NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (span, key, value)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS operations (
    service TEXT NOT NULL,
    operation TEXT NOT NULL,
    kind TEXT NOT NULL,
    last_us INTEGER NOT NULL,
    PRIMARY KEY (service, operation, kind)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT OR IGNORE INTO meta (name, value) VALUES ('bytes', 0);
"""


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


class SpanStore(Protocol):
    """What the collector needs from a span backend. Calls block; the collector runs them in
    threads, so a backend is safe to call from several threads."""

    def write(self, spans: Sequence[Span]) -> None: ...

    def services(self) -> list[str]: ...

    def operations(self, service: str, kind: str | None = None) -> list[tuple[str, str]]:
        """``(operation, kind)`` pairs of ``service``, sorted."""
        ...

    def find_trace_ids(self, query: TraceQuery) -> list[str]:
        """Matching trace ids, the most recent first, at most ``query.limit``."""
        ...

    def traces(self, trace_ids: Sequence[str]) -> dict[str, list[Span]]:
        """The spans of each trace id that has any."""
        ...

    def dependencies(self, start_us: int, end_us: int) -> list[Dependency]: ...

    def enforce_retention(self, *, min_start_us: int, max_bytes: int) -> RetentionResult: ...

    def stored_bytes(self) -> int: ...

    def span_count(self) -> int: ...

    def close(self) -> None: ...


def open_span_store(url_or_path: str | os.PathLike[str]) -> SpanStore:
    """``sqlite:///abs/traces.db``, ``sqlite://relative/traces.db``, a file path, or a
    directory (``<dir>/traces.db``). ``postgresql://`` is reserved for the shared backend."""
    text = os.fspath(url_or_path)
    scheme = urlsplit(text).scheme.lower() if "://" in text else ""
    if scheme == "sqlite":
        parts = urlsplit(text)
        return SqliteSpanStore(Path(unquote(parts.netloc + parts.path)))
    if scheme in ("postgresql", "postgres"):
        raise ValueError("a PostgreSQL span store is not available in this build yet")
    if scheme:
        raise ValueError(f'unknown span store URL scheme "{scheme}" in {text!r}')
    path = Path(text)
    if path.is_dir() or text.endswith(os.sep):
        path = path / DEFAULT_FILENAME
    return SqliteSpanStore(path)


def _tag_text(value: TagValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _encode_body(span: Span) -> str:
    body: dict[str, Any] = {"t": span.tags}
    if span.process_tags:
        body["p"] = span.process_tags
    if span.logs:
        body["l"] = [[log.timestamp_us, log.fields] for log in span.logs]
    if span.links:
        body["r"] = span.links
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


_SPAN_COLUMNS = "trace_id, span_id, parent_id, service, operation, kind, start_us, duration_us"


def _decode(row: Sequence[Any]) -> Span:
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


class SqliteSpanStore:
    """Spans in one SQLite file (created 0600 if missing). A writer connection and a reader
    connection, each behind its own lock: WAL lets queries run while a batch is written."""

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 10.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            fd = os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._writer = self._connect(busy_timeout)
        with self._write_lock:
            if self._writer.execute("PRAGMA user_version").fetchone()[0] == 0:
                # Before the first table: auto_vacuum only takes effect on an empty file.
                self._writer.execute("PRAGMA auto_vacuum=INCREMENTAL")
            self._writer.executescript(_SCHEMA)
            self._writer.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self._reader = self._connect(busy_timeout)

    def _connect(self, busy_timeout: float) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._write_lock:
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._read_lock:
            yield self._reader

    # --- writing ------------------------------------------------------------------------------

    def write(self, spans: Sequence[Span]) -> None:
        if not spans:
            return
        rows = []
        total = 0
        operations: dict[tuple[str, str, str], int] = {}
        for span in spans:
            body = _encode_body(span)
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
            key = (span.service, span.operation, span.kind)
            if operations.get(key, -1) < span.start_us:
                operations[key] = span.start_us
        with self._transaction() as conn:
            first = conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM spans").fetchone()[0]
            conn.executemany(
                f"INSERT INTO spans (id, {_SPAN_COLUMNS}, size, body)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(first + i, *row) for i, row in enumerate(rows)],
            )
            conn.executemany(
                "INSERT OR IGNORE INTO span_tags (span, key, value) VALUES (?, ?, ?)",
                [
                    (first + i, key, _tag_text(value))
                    for i, span in enumerate(spans)
                    for tags in (span.tags, span.process_tags)
                    for key, value in tags.items()
                ],
            )
            conn.executemany(
                "INSERT INTO operations (service, operation, kind, last_us) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (service, operation, kind)"
                " DO UPDATE SET last_us = MAX(last_us, excluded.last_us)",
                [(*key, last) for key, last in operations.items()],
            )
            conn.execute("UPDATE meta SET value = value + ? WHERE name = 'bytes'", (total,))

    # --- reading ------------------------------------------------------------------------------

    def services(self) -> list[str]:
        with self._read() as conn:
            rows = conn.execute("SELECT DISTINCT service FROM operations ORDER BY service")
            return [r[0] for r in rows]

    def operations(self, service: str, kind: str | None = None) -> list[tuple[str, str]]:
        sql = "SELECT DISTINCT operation, kind FROM operations WHERE service = ?"
        args: list[Any] = [service]
        if kind:
            sql += " AND kind = ?"
            args.append(kind)
        with self._read() as conn:
            return [(r[0], r[1]) for r in conn.execute(sql + " ORDER BY operation, kind", args)]

    def find_trace_ids(self, query: TraceQuery) -> list[str]:
        sql = ["SELECT trace_id, MAX(start_us) AS last FROM spans WHERE service = ?"]
        args: list[Any] = [query.service]
        if query.operation:
            sql.append("AND operation = ?")
            args.append(query.operation)
        sql.append("AND start_us >= ? AND start_us <= ?")
        args += [query.start_us, query.end_us]
        if query.min_duration_us is not None:
            sql.append("AND duration_us >= ?")
            args.append(query.min_duration_us)
        if query.max_duration_us is not None:
            sql.append("AND duration_us <= ?")
            args.append(query.max_duration_us)
        for key, value in query.tags.items():
            sql.append(
                "AND EXISTS (SELECT 1 FROM span_tags t WHERE t.span = spans.id"
                " AND t.key = ? AND t.value = ?)"
            )
            args += [key, value]
        sql.append("GROUP BY trace_id ORDER BY last DESC LIMIT ?")
        args.append(max(1, query.limit))
        with self._read() as conn:
            return [r[0] for r in conn.execute(" ".join(sql), args)]

    def traces(self, trace_ids: Sequence[str]) -> dict[str, list[Span]]:
        out: dict[str, list[Span]] = {}
        ids = list(dict.fromkeys(trace_ids))
        with self._read() as conn:
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(
                    f"SELECT {_SPAN_COLUMNS}, body FROM spans WHERE trace_id IN ({marks})"
                    " ORDER BY start_us, id",
                    chunk,
                )
                for row in rows:
                    out.setdefault(row[0], []).append(_decode(row))
        return {t: out[t] for t in ids if t in out}

    def dependencies(self, start_us: int, end_us: int) -> list[Dependency]:
        """Calls between services: a span whose parent was reported by another service."""
        counts: dict[tuple[str, str], int] = {}

        def count(trace: list[Span]) -> None:
            spans = dedupe_span_ids(trace)
            service_of = {s.span_id: s.service for s in spans}
            for span in spans:
                parent = service_of.get(span.parent_id)
                if parent is not None and parent != span.service:
                    counts[(parent, span.service)] = counts.get((parent, span.service), 0) + 1

        with self._read() as conn:
            rows = conn.execute(
                "SELECT trace_id, span_id, parent_id, service, kind FROM spans"
                " WHERE trace_id IN (SELECT trace_id FROM spans"
                "   WHERE start_us >= ? AND start_us <= ?)"
                " ORDER BY trace_id",
                (start_us, end_us),
            )
            current: str | None = None
            trace: list[Span] = []
            for trace_id, span_id, parent_id, service, kind in rows:
                if trace_id != current:
                    count(trace)
                    current, trace = trace_id, []
                trace.append(Span(trace_id, span_id, parent_id, service, "", 0, 0, kind))
            count(trace)
        return [Dependency(p, c, n) for (p, c), n in sorted(counts.items())]

    def stored_bytes(self) -> int:
        with self._read() as conn:
            return int(conn.execute("SELECT value FROM meta WHERE name = 'bytes'").fetchone()[0])

    def span_count(self) -> int:
        with self._read() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM spans").fetchone()[0])

    # --- retention ----------------------------------------------------------------------------

    def enforce_retention(self, *, min_start_us: int, max_bytes: int) -> RetentionResult:
        """Delete spans that started before ``min_start_us``, then the oldest arrivals until
        the stored size is at most 90% of ``max_bytes`` (if it was over ``max_bytes``)."""
        deleted = 0
        with self._transaction() as conn:
            deleted += self._delete(conn, "start_us < ?", (min_start_us,))
            stored = conn.execute("SELECT value FROM meta WHERE name = 'bytes'").fetchone()[0]
            if stored > max_bytes:
                to_free = stored - max_bytes * 9 // 10
                freed, cutoff = 0, 0
                while freed < to_free:
                    rows = conn.execute(
                        "SELECT id, size FROM spans WHERE id > ? ORDER BY id LIMIT 5000",
                        (cutoff,),
                    ).fetchall()
                    if not rows:
                        break
                    for span_id, size in rows:
                        freed += size
                        cutoff = span_id
                        if freed >= to_free:
                            break
                deleted += self._delete(conn, "id <= ?", (cutoff,))
            conn.execute(
                "DELETE FROM operations WHERE NOT EXISTS (SELECT 1 FROM spans"
                " WHERE spans.service = operations.service"
                " AND spans.operation = operations.operation)"
                if deleted
                else "SELECT 1"
            )
            stored = conn.execute("SELECT value FROM meta WHERE name = 'bytes'").fetchone()[0]
        if deleted:
            with self._write_lock:
                self._writer.execute("PRAGMA incremental_vacuum")
                self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return RetentionResult(deleted, int(stored))

    @staticmethod
    def _delete(conn: sqlite3.Connection, where: str, args: tuple[Any, ...]) -> int:
        size = conn.execute(f"SELECT COALESCE(SUM(size), 0) FROM spans WHERE {where}", args)
        freed = size.fetchone()[0]
        conn.execute(
            f"DELETE FROM span_tags WHERE span IN (SELECT id FROM spans WHERE {where})", args
        )
        deleted = conn.execute(f"DELETE FROM spans WHERE {where}", args).rowcount
        conn.execute("UPDATE meta SET value = MAX(0, value - ?) WHERE name = 'bytes'", (freed,))
        return int(deleted)

    def close(self) -> None:
        with self._write_lock, self._read_lock:
            self._reader.close()
            self._writer.close()
