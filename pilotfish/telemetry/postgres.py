"""PostgresSpanStore: spans in the PostgreSQL database that control-plane replicas share.

Spans live in the config store's database (``--store postgresql://...``), in a **schema of
their own, ``pilotfish_traces``**, beside the config store's ``pilotfish_*`` tables: so any
replica answers queries about spans any replica received, and the schema can be left out of
a config backup (``pg_dump -N pilotfish_traces``) or dropped to forget every span. The
tables are the SQLite store's (:mod:`pilotfish.telemetry.store`), asked the same questions
(:mod:`pilotfish.telemetry.spansql`)::

    pilotfish_traces.migrations(version PRIMARY KEY, applied_at)    the migrations applied
    pilotfish_traces.spans(id PRIMARY KEY, trace_id, span_id, parent_id, service, operation,
                           kind, start_us, duration_us, size, body)  id from span_ids
        indexes: (trace_id), (service, start_us), (service, operation, start_us), (start_us)
    pilotfish_traces.span_tags(span, key, value PRIMARY KEY)         span and process tags
    pilotfish_traces.operations(service, operation, kind PRIMARY KEY, last_us)
    pilotfish_traces.meta(name PRIMARY KEY, value)                   'bytes': stored size

Several replicas write at once: span ids come from one sequence (``span_ids``, so arrival
order holds across replicas), spans and tags are new rows that never conflict (``COPY``), and
the short tail of a batch (the size counter, then the operations in sorted order) and the
whole of a retention run queue on one row lock, the ``bytes`` counter's; so writers never
deadlock each other or retention, and the counter always equals the size of what is stored.
Every replica runs retention; a second run right after the first finds nothing to delete.
Deleted rows are reused by PostgreSQL's autovacuum: the database does not shrink on disk,
it stops growing once retention holds the stored size under its limit.

Migrations are numbered, applied at open under an advisory lock of their own, and a
database whose span schema is newer than this Pilotfish knows is refused (as for the config
store). One connection for writes and one for queries, each behind its own lock, each
reopened on the next call once found broken.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from pilotfish.config.store.postgres import (
    SharedConnection,
    apply_migrations,
    redacted,
    wrap_errors,
)
from pilotfish.telemetry import spansql
from pilotfish.telemetry.model import Span
from pilotfish.telemetry.spansql import SPAN_COLUMNS, Dependency, RetentionResult, TraceQuery

#: The schema spans live in, and the prefix of their tables in SQL text.
SCHEMA = "pilotfish_traces"
NS = SCHEMA + "."
#: ``application_name`` of the span store's connections.
CONNECTION_NAME = "pilotfish-traces"
#: Advisory lock key held while migrating ("pftraces"), not the config store's.
_MIGRATION_LOCK = 0x7066747261636573

#: Schema versions, in order. Never edit a released entry: add the next one. Version 1 is the
#: SQLite store's layout written out in PostgreSQL's types: a migration's text stays frozen
#: whatever later becomes of the SQLite schema, so it is not built from shared pieces.
_MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        f"""
        CREATE SEQUENCE {NS}span_ids;
        CREATE TABLE {NS}spans (
            id BIGINT PRIMARY KEY,
            trace_id TEXT NOT NULL,
            span_id TEXT NOT NULL,
            parent_id TEXT NOT NULL,
            service TEXT NOT NULL,
            operation TEXT NOT NULL,
            kind TEXT NOT NULL,
            start_us BIGINT NOT NULL,
            duration_us BIGINT NOT NULL,
            size BIGINT NOT NULL,
            body TEXT NOT NULL
        );
        CREATE INDEX spans_by_trace ON {NS}spans (trace_id);
        CREATE INDEX spans_by_service ON {NS}spans (service, start_us);
        CREATE INDEX spans_by_operation ON {NS}spans (service, operation, start_us);
        CREATE INDEX spans_by_start ON {NS}spans (start_us);
        CREATE TABLE {NS}span_tags (
            span BIGINT NOT NULL,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            PRIMARY KEY (span, key, value)
        );
        CREATE TABLE {NS}operations (
            service TEXT NOT NULL,
            operation TEXT NOT NULL,
            kind TEXT NOT NULL,
            last_us BIGINT NOT NULL,
            PRIMARY KEY (service, operation, kind)
        );
        CREATE TABLE {NS}meta (name TEXT PRIMARY KEY, value BIGINT NOT NULL);
        INSERT INTO {NS}meta (name, value) VALUES ('bytes', 0)
        """,
    ),
)
SCHEMA_VERSION = _MIGRATIONS[-1][0]


def _text(value: Any) -> Any:
    """PostgreSQL's text holds no NUL character: such a string keeps the rest (U+FFFD)."""
    return value.replace("\x00", "\ufffd") if isinstance(value, str) else value


class PostgresSpanStore:
    """A :class:`~pilotfish.telemetry.store.SpanStore` in the PostgreSQL database at ``dsn``
    (a ``postgresql://`` URL or libpq conninfo; the database must exist, the schema is created
    or migrated on open). StoreError when the database cannot be reached or a call fails."""

    def __init__(self, dsn: str, *, connect_timeout: float = 10.0) -> None:
        self.dsn = dsn
        self._where = f"the span store {redacted(dsn)}"
        self._writer, self._reader = (
            SharedConnection(dsn, self._where, timeout=connect_timeout, name=CONNECTION_NAME)
            for _ in range(2)
        )
        try:
            with self._writer.use() as conn:
                apply_migrations(
                    conn,
                    self._where,
                    _MIGRATIONS,
                    table=NS + "migrations",
                    lock_key=_MIGRATION_LOCK,
                    schema=SCHEMA,
                )
        except BaseException:
            self.close()
            raise

    # --- writing ------------------------------------------------------------------------------

    def write(self, spans: Sequence[Span]) -> None:
        if not spans:
            return
        batch = spansql.batch(spans)
        with self._writer.use() as conn, wrap_errors(self._where, "write"), conn.transaction():
            ids = [
                int(row[0])
                for row in conn.execute(
                    f"SELECT nextval('{NS}span_ids') FROM generate_series(1, %s)",
                    (len(batch.rows),),
                )
            ]
            with conn.cursor() as cur:
                with cur.copy(f"COPY {NS}spans (id, {SPAN_COLUMNS}, size, body) FROM STDIN") as cp:
                    for span_id, row in zip(ids, batch.rows, strict=True):
                        cp.write_row((span_id, *map(_text, row)))
                with cur.copy(f"COPY {NS}span_tags (span, key, value) FROM STDIN") as cp:
                    for index, key, value in batch.tags:
                        cp.write_row((ids[index], _text(key), _text(value)))
                # The counter's row lock first, then the operations in sorted order: every
                # writer and retention take them in this order.
                cur.execute(
                    f"UPDATE {NS}meta SET value = value + %s WHERE name = 'bytes'", (batch.size,)
                )
                cur.executemany(
                    f"INSERT INTO {NS}operations AS o (service, operation, kind, last_us)"
                    " VALUES (%s, %s, %s, %s) ON CONFLICT (service, operation, kind)"
                    " DO UPDATE SET last_us = GREATEST(o.last_us, excluded.last_us)",
                    [tuple(map(_text, op)) for op in batch.operations],
                )

    # --- reading ------------------------------------------------------------------------------

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._reader.use() as conn, wrap_errors(self._where, "read"):
            return conn.execute(sql.encode(), args).fetchall()

    def services(self) -> list[str]:
        return sorted(r[0] for r in self._query(spansql.services_sql(NS)))

    def operations(self, service: str, kind: str | None = None) -> list[tuple[str, str]]:
        return sorted(
            (r[0], r[1]) for r in self._query(*spansql.operations_sql(NS, "%s", service, kind))
        )

    def find_trace_ids(self, query: TraceQuery) -> list[str]:
        return [r[0] for r in self._query(*spansql.trace_search_sql(NS, "%s", query))]

    def traces(self, trace_ids: Sequence[str]) -> dict[str, list[Span]]:
        ids = list(dict.fromkeys(trace_ids))
        out: dict[str, list[Span]] = {}
        if ids:
            rows = self._query(
                f"SELECT {SPAN_COLUMNS}, body FROM {NS}spans WHERE trace_id = ANY(%s)"
                " ORDER BY start_us, id",
                (ids,),
            )
            for row in rows:
                out.setdefault(row[0], []).append(spansql.decode_span(row))
        return {t: out[t] for t in ids if t in out}

    def dependencies(self, start_us: int, end_us: int) -> list[Dependency]:
        """Calls between services: a span whose parent was reported by another service."""
        with self._reader.use() as conn, wrap_errors(self._where, "read"):
            cur = conn.cursor()
            # Streamed: a day of spans need not be in memory at once.
            rows = cur.stream(spansql.dependencies_sql(NS, "%s").encode(), (start_us, end_us))
            return spansql.count_dependencies(rows)

    def stored_bytes(self) -> int:
        return int(self._query(spansql.bytes_sql(NS))[0][0])

    def span_count(self) -> int:
        return int(self._query(f"SELECT count(*) FROM {NS}spans")[0][0])

    # --- retention ----------------------------------------------------------------------------

    def enforce_retention(self, *, min_start_us: int, max_bytes: int) -> RetentionResult:
        """Delete spans that started before ``min_start_us``, then the oldest arrivals (of any
        replica) until the stored size is at most 90% of ``max_bytes`` (if it was over
        ``max_bytes``). One transaction, holding the size counter's row lock throughout."""
        with self._writer.use() as conn, wrap_errors(self._where, "retention"), conn.transaction():
            locked = conn.execute((spansql.bytes_sql(NS) + " FOR UPDATE").encode()).fetchone()
            stored = int(locked[0]) if locked else 0
            deleted, freed = self._delete(conn, "start_us < %s", (min_start_us,))
            stored -= freed
            page = spansql.cutoff_page_sql(NS, "%s").encode()
            cutoff = spansql.size_cutoff(
                lambda after: conn.execute(page, (after,)).fetchall(), stored, max_bytes
            )
            if cutoff:
                more, size = self._delete(conn, "id <= %s", (cutoff,))
                deleted, freed, stored = deleted + more, freed + size, stored - size
            if deleted:
                conn.execute(spansql.orphan_operations_sql(NS).encode())
                conn.execute(
                    f"UPDATE {NS}meta SET value = GREATEST(0, value - %s) WHERE name = 'bytes'",
                    (freed,),
                )
        return RetentionResult(deleted, max(0, stored))

    @staticmethod
    def _delete(
        conn: psycopg.Connection[Any], where: str, args: tuple[Any, ...]
    ) -> tuple[int, int]:
        """Delete the spans ``where`` holds and their tags; ``(spans deleted, their size)``."""
        row = conn.execute(
            f"WITH gone AS (DELETE FROM {NS}spans WHERE {where} RETURNING id, size),"
            f" tags AS (DELETE FROM {NS}span_tags WHERE span IN (SELECT id FROM gone))"
            " SELECT count(*), COALESCE(sum(size), 0) FROM gone".encode(),
            args,
        ).fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def close(self) -> None:
        self._writer.close()
        self._reader.close()
