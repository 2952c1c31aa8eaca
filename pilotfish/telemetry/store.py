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

The second backend, :class:`~pilotfish.telemetry.postgres.PostgresSpanStore`, keeps the same
tables in the PostgreSQL database control-plane replicas share (schema ``pilotfish_traces``);
both ask them through :mod:`pilotfish.telemetry.spansql`. :func:`open_span_store` is the one
place that maps a URL to a backend.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from pilotfish.config.store.factory import is_postgres, url_scheme
from pilotfish.telemetry import spansql
from pilotfish.telemetry.model import Span
from pilotfish.telemetry.spansql import SPAN_COLUMNS, Dependency, RetentionResult, TraceQuery

__all__ = [
    "DEFAULT_FILENAME",
    "Dependency",
    "RetentionResult",
    "SpanStore",
    "SqliteSpanStore",
    "TraceQuery",
    "open_span_store",
]

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
    directory (``<dir>/traces.db``): a :class:`SqliteSpanStore`. ``postgresql://`` (or
    ``postgres://``, with libpq's parameters): a
    :class:`~pilotfish.telemetry.postgres.PostgresSpanStore`, shared by control-plane
    replicas. ValueError for an unknown scheme."""
    text = os.fspath(url_or_path)
    scheme = url_scheme(text)
    if scheme == "sqlite":
        parts = urlsplit(text)
        return SqliteSpanStore(Path(unquote(parts.netloc + parts.path)))
    if is_postgres(text):
        try:
            from pilotfish.telemetry.postgres import PostgresSpanStore
        except ImportError as exc:
            raise ValueError(
                f"a PostgreSQL span store needs the psycopg package ({exc}):"
                " install Pilotfish with its postgres extra, pip install 'pilotfish[postgres]'"
            ) from None
        return PostgresSpanStore(text)
    if scheme:
        raise ValueError(
            f'unknown span store URL scheme "{scheme}" in {text!r}'
            " (use sqlite:///path/traces.db, a path, or postgresql://host/database)"
        )
    path = Path(text)
    if path.is_dir() or text.endswith(os.sep):
        path = path / DEFAULT_FILENAME
    return SqliteSpanStore(path)


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
        batch = spansql.batch(spans)
        with self._transaction() as conn:
            first = conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM spans").fetchone()[0]
            conn.executemany(
                f"INSERT INTO spans (id, {SPAN_COLUMNS}, size, body)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(first + i, *row) for i, row in enumerate(batch.rows)],
            )
            conn.executemany(
                "INSERT INTO span_tags (span, key, value) VALUES (?, ?, ?)",
                [(first + i, key, value) for i, key, value in batch.tags],
            )
            conn.executemany(
                "INSERT INTO operations (service, operation, kind, last_us) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (service, operation, kind)"
                " DO UPDATE SET last_us = MAX(last_us, excluded.last_us)",
                batch.operations,
            )
            conn.execute("UPDATE meta SET value = value + ? WHERE name = 'bytes'", (batch.size,))

    # --- reading ------------------------------------------------------------------------------

    def services(self) -> list[str]:
        with self._read() as conn:
            return sorted(r[0] for r in conn.execute(spansql.services_sql("")))

    def operations(self, service: str, kind: str | None = None) -> list[tuple[str, str]]:
        sql, args = spansql.operations_sql("", "?", service, kind)
        with self._read() as conn:
            return sorted((r[0], r[1]) for r in conn.execute(sql, args))

    def find_trace_ids(self, query: TraceQuery) -> list[str]:
        sql, args = spansql.trace_search_sql("", "?", query)
        with self._read() as conn:
            return [r[0] for r in conn.execute(sql, args)]

    def traces(self, trace_ids: Sequence[str]) -> dict[str, list[Span]]:
        out: dict[str, list[Span]] = {}
        ids = list(dict.fromkeys(trace_ids))
        with self._read() as conn:
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(
                    f"SELECT {SPAN_COLUMNS}, body FROM spans WHERE trace_id IN ({marks})"
                    " ORDER BY start_us, id",
                    chunk,
                )
                for row in rows:
                    out.setdefault(row[0], []).append(spansql.decode_span(row))
        return {t: out[t] for t in ids if t in out}

    def dependencies(self, start_us: int, end_us: int) -> list[Dependency]:
        """Calls between services: a span whose parent was reported by another service."""
        with self._read() as conn:
            rows = conn.execute(spansql.dependencies_sql("", "?"), (start_us, end_us))
            return spansql.count_dependencies(rows)

    def stored_bytes(self) -> int:
        with self._read() as conn:
            return int(conn.execute(spansql.bytes_sql("")).fetchone()[0])

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
            stored = conn.execute(spansql.bytes_sql("")).fetchone()[0]
            page = spansql.cutoff_page_sql("", "?")
            cutoff = spansql.size_cutoff(
                lambda after: conn.execute(page, (after,)).fetchall(), stored, max_bytes
            )
            if cutoff:
                deleted += self._delete(conn, "id <= ?", (cutoff,))
            if deleted:
                conn.execute(spansql.orphan_operations_sql(""))
            stored = conn.execute(spansql.bytes_sql("")).fetchone()[0]
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
