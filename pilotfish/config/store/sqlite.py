"""SqliteStore: the embedded default config store, one SQLite file in the data directory.

Layout (schema version 2, kept in ``PRAGMA user_version``; version 2 added ``audit`` and
``api_tokens``, see ``access``)::

    meta(name PRIMARY KEY, value)     'revision': last committed revision
                                      'compacted': highest revision whose event was dropped
    objects(kind, namespace, name PRIMARY KEY, revision, body JSON)   current objects
    events(revision PRIMARY KEY, type, kind, namespace, name, body JSON)   append-only log
    audit(id PRIMARY KEY AUTOINCREMENT, body JSON)   changes made through the API
    api_tokens(name PRIMARY KEY, role, digest UNIQUE, created, created_by)

Every ``commit`` is one ``BEGIN IMMEDIATE ... COMMIT`` transaction that reads the revision
counter, applies the planned writes to ``objects``, appends to ``events``, advances the
counter and compacts the log, so a crash (even ``kill -9``) leaves all or none of a commit.
The file is in WAL mode with ``synchronous=FULL``: a commit that returned is on disk.
The counter lives in the file, so reopening restores it exactly, and several processes may
share one file (their commits serialize on SQLite's write lock); subscribers only hear about
commits made through this instance.

One connection per instance, guarded by a lock: calls are short and serialize, which is
what the control plane (an asyncio loop and a few threads) needs.
"""

from __future__ import annotations

import builtins
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pilotfish.config.store.access import (
    DEFAULT_KEEP_AUDIT,
    ApiToken,
    AuditEntry,
    audit_time,
    token_exists,
    token_not_found,
)
from pilotfish.config.store.addresses import HOLDER_KINDS, like_patterns
from pilotfish.config.store.base import CommitResult, Event, EventType, Key, Operation, StoredObject
from pilotfish.config.store.notify import Subscribers
from pilotfish.config.store.plan import Clock, check_since, plan_commit, utc_now
from pilotfish.errors import StoreError

DEFAULT_FILENAME = "config.db"
DEFAULT_KEEP_EVENTS = 10_000
SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS objects (
    kind TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    revision INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (kind, namespace, name)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS objects_by_namespace ON objects (namespace, kind, name);
CREATE TABLE IF NOT EXISTS events (
    revision INTEGER PRIMARY KEY,
    type TEXT NOT NULL,
    kind TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS api_tokens (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    digest TEXT NOT NULL UNIQUE,
    created TEXT NOT NULL,
    created_by TEXT NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO meta (name, value) VALUES ('revision', 0), ('compacted', 0);
"""


class SqliteStore:
    """A Store in the SQLite file at ``path`` (created with mode 0600 if missing).

    ``keep_events``: the log keeps at least this many recent events; ``events_since`` an
    older revision raises CompactedError. ``busy_timeout``: seconds to wait for another
    process holding the write lock.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        keep_events: int = DEFAULT_KEEP_EVENTS,
        busy_timeout: float = 10.0,
        clock: Clock = utc_now,
    ) -> None:
        if keep_events < 1:
            raise ValueError(f"keep_events must be >= 1, got {keep_events}")
        self.path = Path(path)
        self._keep = keep_events
        self._clock = clock
        self._lock = threading.Lock()
        self._subscribers = Subscribers()
        self._conn: sqlite3.Connection | None = _connect(self.path, busy_timeout)

    # -- reads ------------------------------------------------------------------------

    def get(self, key: Key) -> StoredObject | None:
        with self._locked() as conn:
            row = conn.execute(
                "SELECT revision, body FROM objects WHERE kind = ? AND namespace = ? AND name = ?",
                (key.kind, key.namespace, key.name),
            ).fetchone()
        return StoredObject(key, json.loads(row[1]), row[0]) if row else None

    def list(self, kind: str | None = None, namespace: str | None = None) -> list[StoredObject]:
        where: list[str] = []
        args: list[str] = []
        if kind is not None:
            where.append("kind = ?")
            args.append(kind)
        if namespace is not None:
            where.append("namespace = ?")
            args.append(namespace)
        sql = "SELECT kind, namespace, name, revision, body FROM objects"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY kind, namespace, name"
        with self._locked() as conn:
            rows = conn.execute(sql, args).fetchall()
        return [StoredObject(Key(k, ns, n), json.loads(b), r) for k, ns, n, r, b in rows]

    def revision(self) -> int:
        with self._locked() as conn:
            return _meta(conn, "revision")

    def events_since(self, revision: int, limit: int | None = None) -> builtins.list[Event]:
        sql = (
            "SELECT revision, type, kind, namespace, name, body FROM events"
            " WHERE revision > ? ORDER BY revision"
        )
        args: tuple[int, ...] = (revision,)
        if limit is not None:
            sql += " LIMIT ?"
            args = (revision, max(limit, 0))
        with self._locked() as conn:
            # One read transaction, so the counters and the rows agree.
            conn.execute("BEGIN")
            try:
                check_since(revision, _meta(conn, "revision"), _meta(conn, "compacted"))
                rows = conn.execute(sql, args).fetchall()
            finally:
                conn.execute("COMMIT")
        return [_event(*row) for row in rows]

    # -- writes -----------------------------------------------------------------------

    def commit(self, ops: Sequence[Operation], audit: AuditEntry | None = None) -> CommitResult:
        with self._locked() as conn:
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreError(f"config store {self.path}: cannot start a write: {exc}") from None
            try:
                current = _meta(conn, "revision")
                events = plan_commit(
                    ops,
                    lambda key: _lookup(conn, key),
                    current,
                    clock=self._clock,
                    holders=lambda addresses: _holders(conn, addresses),
                )
                if events:
                    _write(conn, events)
                    current = events[-1].revision
                    _compact(conn, current, self._keep)
                    if audit is not None:
                        self._append_audit(conn, audit, current)
                conn.execute("COMMIT")
            except BaseException as exc:
                _rollback(conn)
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"config store {self.path}: write failed: {exc}") from exc
                raise
        if events:
            self._subscribers.notify(current)
        return CommitResult(current, events)

    # -- tokens and the audit log (see ``access``) ---------------------------------------

    def audit_log(self, after: int = 0, limit: int | None = None) -> builtins.list[AuditEntry]:
        sql = "SELECT id, body FROM audit WHERE id > ? ORDER BY id DESC"
        args: tuple[int, ...] = (after,)
        if limit is not None:
            sql += " LIMIT ?"
            args = (after, max(limit, 0))
        with self._locked() as conn:
            rows = conn.execute(sql, args).fetchall()
        return [AuditEntry.from_json(i, b) for i, b in reversed(rows)]

    def add_api_token(self, token: ApiToken, audit: AuditEntry) -> None:
        def write(conn: sqlite3.Connection) -> None:
            if conn.execute("SELECT 1 FROM api_tokens WHERE name = ?", (token.name,)).fetchone():
                raise token_exists(token.name)
            conn.execute(
                "INSERT INTO api_tokens (name, role, digest, created, created_by)"
                " VALUES (?, ?, ?, ?, ?)",
                (token.name, token.role, token.digest, token.created, token.created_by),
            )

        self._audited_write(write, audit)

    def record_audit(self, audit: AuditEntry) -> None:
        self._audited_write(lambda conn: None, audit)

    def remove_api_token(self, name: str, audit: AuditEntry) -> ApiToken:
        found: list[ApiToken] = []

        def write(conn: sqlite3.Connection) -> None:
            row = conn.execute(_TOKEN_SELECT + " WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise token_not_found(name)
            conn.execute("DELETE FROM api_tokens WHERE name = ?", (name,))
            found.append(ApiToken(*row))

        self._audited_write(write, audit)
        return found[0]

    def api_tokens(self) -> builtins.list[ApiToken]:
        with self._locked() as conn:
            rows = conn.execute(_TOKEN_SELECT + " ORDER BY name").fetchall()
        return [ApiToken(*r) for r in rows]

    def api_token(self, digest: str) -> ApiToken | None:
        with self._locked() as conn:
            row = conn.execute(_TOKEN_SELECT + " WHERE digest = ?", (digest,)).fetchone()
        return ApiToken(*row) if row else None

    def _audited_write(
        self, write: Callable[[sqlite3.Connection], None], audit: AuditEntry
    ) -> None:
        with self._locked() as conn:
            try:
                conn.execute("BEGIN IMMEDIATE")
                write(conn)
                self._append_audit(conn, audit, _meta(conn, "revision"))
                conn.execute("COMMIT")
            except BaseException as exc:
                _rollback(conn)
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"config store {self.path}: write failed: {exc}") from exc
                raise

    def _append_audit(self, conn: sqlite3.Connection, audit: AuditEntry, revision: int) -> None:
        body = audit.stamped(audit_time(self._clock()), revision).to_json()
        cur = conn.execute("INSERT INTO audit (body) VALUES (?)", (body,))
        floor = (cur.lastrowid or 0) - DEFAULT_KEEP_AUDIT
        if floor > 0 and (cur.lastrowid or 0) % 1000 == 0:
            conn.execute("DELETE FROM audit WHERE id <= ?", (floor,))

    def subscribe(self, callback: Callable[[int], None]) -> Callable[[], None]:
        return self._subscribers.add(callback)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        self._subscribers.clear()

    @contextmanager
    def _locked(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._conn is None:
                raise StoreError(f"the config store {self.path} is closed")
            yield self._conn


# -- helpers (run with the instance lock held) -------------------------------------------


def _connect(path: Path, busy_timeout: float) -> sqlite3.Connection:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            # The store holds Secrets: only the owner may read it.
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        conn = sqlite3.connect(
            path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
        )
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(f"cannot open the config store {path}: {exc}") from None
    try:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(
                f"cannot open the config store {path}: the file system does not support"
                f" SQLite's WAL mode (journal mode stayed {mode!r})"
            )
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"the config store {path} has schema version {version}; this Pilotfish"
                    f" reads up to version {SCHEMA_VERSION} (upgrade Pilotfish)"
                )
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise
    except sqlite3.Error as exc:
        conn.close()
        raise StoreError(f"cannot open the config store {path}: {exc}") from None
    except BaseException:
        conn.close()
        raise
    return conn


_TOKEN_SELECT = "SELECT name, role, digest, created, created_by FROM api_tokens"


def _rollback(conn: sqlite3.Connection) -> None:
    try:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    except sqlite3.Error:
        pass  # the transaction is gone either way; the original error is what matters


def _meta(conn: sqlite3.Connection, name: str) -> int:
    row = conn.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
    return int(row[0]) if row else 0


def _lookup(conn: sqlite3.Connection, key: Key) -> StoredObject | None:
    row = conn.execute(
        "SELECT revision, body FROM objects WHERE kind = ? AND namespace = ? AND name = ?",
        (key.kind, key.namespace, key.name),
    ).fetchone()
    return StoredObject(key, json.loads(row[1]), row[0]) if row else None


def _holders(conn: sqlite3.Connection, addresses: set[str]) -> list[StoredObject]:
    """Services and ServiceEntries whose body mentions one of ``addresses``."""
    patterns = like_patterns(addresses)
    if not patterns:
        return []
    kinds = ", ".join("?" for _ in HOLDER_KINDS)
    likes = " OR ".join("body LIKE ?" for _ in patterns)
    rows = conn.execute(
        f"SELECT kind, namespace, name, revision, body FROM objects"
        f" WHERE kind IN ({kinds}) AND ({likes})",
        (*HOLDER_KINDS, *patterns),
    ).fetchall()
    return [StoredObject(Key(k, ns, n), json.loads(b), r) for k, ns, n, r, b in rows]


def _write(conn: sqlite3.Connection, events: Sequence[Event]) -> None:
    upserts: list[tuple[Any, ...]] = []
    log: list[tuple[Any, ...]] = []
    for event in events:
        obj = event.object
        body = json.dumps(obj.body, separators=(",", ":"))
        log.append((event.revision, event.type, obj.kind, obj.namespace, obj.name, body))
        if event.type == "DELETED":
            # Flush pending upserts first: operations on one key must apply in order.
            _upsert(conn, upserts)
            upserts = []
            conn.execute(
                "DELETE FROM objects WHERE kind = ? AND namespace = ? AND name = ?",
                (obj.kind, obj.namespace, obj.name),
            )
        else:
            upserts.append((obj.kind, obj.namespace, obj.name, event.revision, body))
    _upsert(conn, upserts)
    conn.executemany(
        "INSERT INTO events (revision, type, kind, namespace, name, body)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        log,
    )
    conn.execute("UPDATE meta SET value = ? WHERE name = 'revision'", (events[-1].revision,))


def _upsert(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    if rows:
        conn.executemany(
            "INSERT INTO objects (kind, namespace, name, revision, body) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (kind, namespace, name)"
            " DO UPDATE SET revision = excluded.revision, body = excluded.body",
            rows,
        )


def _compact(conn: sqlite3.Connection, revision: int, keep: int) -> None:
    floor = revision - keep
    if floor > _meta(conn, "compacted"):
        conn.execute("DELETE FROM events WHERE revision <= ?", (floor,))
        conn.execute("UPDATE meta SET value = ? WHERE name = 'compacted'", (floor,))


_EVENT_TYPES: dict[str, EventType] = {
    "ADDED": "ADDED",
    "MODIFIED": "MODIFIED",
    "DELETED": "DELETED",
}


def _event(revision: int, type_: str, kind: str, namespace: str, name: str, body: str) -> Event:
    obj = StoredObject(Key(kind, namespace, name), json.loads(body), revision)
    return Event(_EVENT_TYPES[type_], revision, obj)
