"""PostgresStore: the config store in a PostgreSQL database, shared by control-plane replicas.

Same contract as every backend (see ``base`` and ``plan``); the tables mirror the SQLite
layout::

    pilotfish_schema(version PRIMARY KEY, applied_at)   the migrations applied, in order
    pilotfish_meta(name PRIMARY KEY, value)             'revision': last committed revision
                                                        'compacted': highest dropped event
    pilotfish_objects(kind, namespace, name PRIMARY KEY, revision, body)   current objects
    pilotfish_events(revision PRIMARY KEY, type, kind, namespace, name, body)   the log
    pilotfish_leases(name PRIMARY KEY, holder, expires_at)   leader leases (``try_lease``)
    pilotfish_audit(id PRIMARY KEY, body)                changes made through the API
    pilotfish_api_tokens(name PRIMARY KEY, role, digest UNIQUE, created, created_by)

Bodies are kept as JSON text, so the key order callers wrote is the order they read back.

Every ``commit`` is one transaction that first locks the revision counter row
(``SELECT ... FOR UPDATE``): commits of every replica serialize on it, each sees the objects
the previous one committed (READ COMMITTED), and a commit's events become visible only
after every lower revision's, so the log never shows a gap to a reader. Inside the same
transaction it sends ``NOTIFY pilotfish_config, '<instance> <revision>'``; PostgreSQL delivers
it to every listening replica when (and only if) the commit lands.

Subscribers hear about commits made anywhere: through this instance from the committing
thread (as with SQLite), and through other instances from a listener thread holding its own
connection with ``LISTEN``. Notifications are only hints: a listener that reconnects after
losing its connection, and a periodic check of the revision counter, notify the current
revision too, so a watch catches up (``events_since``) on whatever it may have missed.

Migrations: ``_MIGRATIONS`` lists the schema versions in order; opening a store applies the
missing ones under a transaction-scoped advisory lock (replicas starting together do not
race) and refuses a database whose schema is newer than this Pilotfish knows.

One connection per instance for reads and writes, guarded by a lock (calls are short), plus
the listener's connection. A connection found broken is reopened on the next call.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import logging
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

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

log = logging.getLogger(__name__)

DEFAULT_KEEP_EVENTS = 10_000
#: The NOTIFY channel commits are announced on.
CHANNEL = "pilotfish_config"
#: ``application_name`` of the listener's connection (as seen in ``pg_stat_activity``).
LISTENER_NAME = "pilotfish-listener"
#: Advisory lock key held while migrating (any constant unlikely to clash: "pilotfis").
_MIGRATION_LOCK = 0x70696C6F74666973 & 0x7FFFFFFFFFFFFFFF

#: Schema versions, in order. Never edit a released entry: add the next one.
_MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        """
        CREATE TABLE pilotfish_meta (
            name TEXT PRIMARY KEY,
            value BIGINT NOT NULL
        );
        INSERT INTO pilotfish_meta (name, value) VALUES ('revision', 0), ('compacted', 0);
        CREATE TABLE pilotfish_objects (
            kind TEXT NOT NULL,
            namespace TEXT NOT NULL,
            name TEXT NOT NULL,
            revision BIGINT NOT NULL,
            body TEXT NOT NULL,
            PRIMARY KEY (kind, namespace, name)
        );
        CREATE INDEX pilotfish_objects_by_namespace ON pilotfish_objects (namespace, kind, name);
        CREATE TABLE pilotfish_events (
            revision BIGINT PRIMARY KEY,
            type TEXT NOT NULL,
            kind TEXT NOT NULL,
            namespace TEXT NOT NULL,
            name TEXT NOT NULL,
            body TEXT NOT NULL
        );
        """,
    ),
    (
        2,
        """
        CREATE TABLE pilotfish_leases (
            name TEXT PRIMARY KEY,
            holder TEXT NOT NULL,
            expires_at TIMESTAMPTZ NOT NULL
        );
        """,
    ),
    (
        3,
        """
        CREATE TABLE pilotfish_audit (
            id BIGSERIAL PRIMARY KEY,
            body TEXT NOT NULL
        );
        CREATE TABLE pilotfish_api_tokens (
            name TEXT PRIMARY KEY,
            role TEXT NOT NULL,
            digest TEXT NOT NULL UNIQUE,
            created TEXT NOT NULL,
            created_by TEXT NOT NULL
        );
        """,
    ),
)
SCHEMA_VERSION = _MIGRATIONS[-1][0]


class PostgresStore:
    """A Store in the PostgreSQL database at ``dsn`` (a ``postgresql://`` URL or libpq
    conninfo). The database must exist; the tables are created or migrated on open.

    ``keep_events``: the log keeps at least this many recent events. ``poll_interval``:
    seconds between checks of the revision counter by the listener, the safety net behind
    NOTIFY. ``connect_timeout``: seconds to wait for the server.
    """

    def __init__(
        self,
        dsn: str,
        *,
        keep_events: int = DEFAULT_KEEP_EVENTS,
        clock: Clock = utc_now,
        poll_interval: float = 2.0,
        connect_timeout: float = 10.0,
    ) -> None:
        if keep_events < 1:
            raise ValueError(f"keep_events must be >= 1, got {keep_events}")
        self.dsn = dsn
        self._keep = keep_events
        self._clock = clock
        self._poll = poll_interval
        self._connect_timeout = connect_timeout
        self._instance = uuid.uuid4().hex
        self._subscribers = Subscribers()
        self._closed = threading.Event()
        self._conn = SharedConnection(dsn, self._where, timeout=connect_timeout)
        try:
            with self._conn.use() as conn:
                _migrate(conn, self._where)
                opened_at = _meta(conn, "revision")
        except BaseException:
            self._conn.close()
            raise
        self._listener: threading.Thread | None = None
        self._listener_lock = threading.Lock()
        #: The highest revision subscribers were told about (the listener's poll baseline).
        self._latest = opened_at
        self._latest_lock = threading.Lock()

    @property
    def _where(self) -> str:
        return f"the config store {redacted(self.dsn)}"

    # -- reads ------------------------------------------------------------------------

    def get(self, key: Key) -> StoredObject | None:
        with self._locked() as conn, wrap_errors(self._where, "read"):
            row = _lookup_row(conn, key)
        return StoredObject(key, json.loads(row[1]), int(row[0])) if row else None

    def list(self, kind: str | None = None, namespace: str | None = None) -> list[StoredObject]:
        where: list[sql.Composable] = []
        args: list[str] = []
        if kind is not None:
            where.append(sql.SQL("kind = %s"))
            args.append(kind)
        if namespace is not None:
            where.append(sql.SQL("namespace = %s"))
            args.append(namespace)
        query: sql.Composable = sql.SQL(
            "SELECT kind, namespace, name, revision, body FROM pilotfish_objects"
        )
        if where:
            query += sql.SQL(" WHERE ") + sql.SQL(" AND ").join(where)
        # COLLATE "C": the same byte order as SQLite and Python, whatever the database's locale.
        query += sql.SQL(' ORDER BY kind COLLATE "C", namespace COLLATE "C", name COLLATE "C"')
        with self._locked() as conn, wrap_errors(self._where, "read"):
            rows = conn.execute(query, args).fetchall()
        return [StoredObject(Key(k, ns, n), json.loads(b), int(r)) for k, ns, n, r, b in rows]

    def revision(self) -> int:
        with self._locked() as conn, wrap_errors(self._where, "read"):
            return _meta(conn, "revision")

    def events_since(self, revision: int, limit: int | None = None) -> builtins.list[Event]:
        query = (
            "SELECT revision, type, kind, namespace, name, body FROM pilotfish_events"
            " WHERE revision > %s ORDER BY revision"
        )
        args: tuple[int, ...] = (revision,)
        if limit is not None:
            query += " LIMIT %s"
            args = (revision, max(limit, 0))
        if revision < 0:
            raise ValueError(f"revision must be >= 0, got {revision}")
        with self._locked() as conn, wrap_errors(self._where, "read"):
            # One snapshot for the counters and the rows, so they agree.
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            try:
                check_since(revision, _meta(conn, "revision"), _meta(conn, "compacted"))
                rows = conn.execute(query, args).fetchall()
            finally:
                _finish(conn, "COMMIT")
        return [_event(*row) for row in rows]

    # -- writes -----------------------------------------------------------------------

    def commit(self, ops: Sequence[Operation], audit: AuditEntry | None = None) -> CommitResult:
        with self._locked() as conn:
            try:
                with wrap_errors(self._where, "write"):
                    conn.execute("BEGIN ISOLATION LEVEL READ COMMITTED")
                    # Every replica's commits queue here, one at a time.
                    current = int(
                        _one(
                            conn.execute(
                                "SELECT value FROM pilotfish_meta WHERE name = 'revision'"
                                " FOR UPDATE"
                            )
                        )
                    )
                    # Checked after the lock above: no other commit can pass the same check
                    # with the same address before this one ends.
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
                        conn.execute(
                            "SELECT pg_notify(%s, %s)", (CHANNEL, f"{self._instance} {current}")
                        )
                        self._saw(current)
                    conn.execute("COMMIT")
            except BaseException:
                _finish(conn, "ROLLBACK")
                raise
        if events:
            self._subscribers.notify(current)
        return CommitResult(current, events)

    # -- tokens and the audit log (see ``access``) ---------------------------------------

    def audit_log(self, after: int = 0, limit: int | None = None) -> builtins.list[AuditEntry]:
        query = "SELECT id, body FROM pilotfish_audit WHERE id > %s ORDER BY id DESC"
        args: tuple[int, ...] = (after,)
        if limit is not None:
            query += " LIMIT %s"
            args = (after, max(limit, 0))
        with self._locked() as conn, wrap_errors(self._where, "read"):
            rows = conn.execute(query, args).fetchall()
        return [AuditEntry.from_json(int(i), b) for i, b in reversed(rows)]

    def add_api_token(self, token: ApiToken, audit: AuditEntry) -> None:
        def write(conn: psycopg.Connection[Any]) -> None:
            row = conn.execute(
                "INSERT INTO pilotfish_api_tokens (name, role, digest, created, created_by)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (name) DO NOTHING RETURNING name",
                (token.name, token.role, token.digest, token.created, token.created_by),
            ).fetchone()
            if row is None:
                raise token_exists(token.name)

        self._audited_write(write, audit)

    def record_audit(self, audit: AuditEntry) -> None:
        self._audited_write(lambda conn: None, audit)

    def remove_api_token(self, name: str, audit: AuditEntry) -> ApiToken:
        found: list[ApiToken] = []

        def write(conn: psycopg.Connection[Any]) -> None:
            row = conn.execute(
                "DELETE FROM pilotfish_api_tokens WHERE name = %s"
                " RETURNING name, role, digest, created, created_by",
                (name,),
            ).fetchone()
            if row is None:
                raise token_not_found(name)
            found.append(ApiToken(*row))

        self._audited_write(write, audit)
        return found[0]

    def api_tokens(self) -> builtins.list[ApiToken]:
        with self._locked() as conn, wrap_errors(self._where, "read"):
            rows = conn.execute(_TOKEN_SELECT + ' ORDER BY name COLLATE "C"').fetchall()
        return [ApiToken(*r) for r in rows]

    def api_token(self, digest: str) -> ApiToken | None:
        with self._locked() as conn, wrap_errors(self._where, "read"):
            row = conn.execute(_TOKEN_SELECT + " WHERE digest = %s", (digest,)).fetchone()
        return ApiToken(*row) if row else None

    def _audited_write(
        self, write: Callable[[psycopg.Connection[Any]], None], audit: AuditEntry
    ) -> None:
        with self._locked() as conn:
            try:
                with wrap_errors(self._where, "write"):
                    conn.execute("BEGIN ISOLATION LEVEL READ COMMITTED")
                    write(conn)
                    self._append_audit(conn, audit, _meta(conn, "revision"))
                    conn.execute("COMMIT")
            except BaseException:
                _finish(conn, "ROLLBACK")
                raise

    def _append_audit(
        self, conn: psycopg.Connection[Any], audit: AuditEntry, revision: int
    ) -> None:
        body = audit.stamped(audit_time(self._clock()), revision).to_json()
        new_id = int(
            _one(
                conn.execute("INSERT INTO pilotfish_audit (body) VALUES (%s) RETURNING id", (body,))
            )
        )
        if new_id > DEFAULT_KEEP_AUDIT and new_id % 1000 == 0:
            conn.execute(
                "DELETE FROM pilotfish_audit WHERE id <= %s", (new_id - DEFAULT_KEEP_AUDIT,)
            )

    def try_lease(self, name: str, holder: str, ttl: float) -> bool:
        """Take or renew the lease ``name`` for ``holder`` for ``ttl`` seconds; True if
        ``holder`` holds it now. A lease is taken over only once it expired (its holder
        stopped renewing: crashed, stopped, or cut off from the database). Expiry is judged
        by the database's clock, so replicas' clocks need not agree. The building block for
        singletons that one replica runs at a time."""
        if ttl <= 0:
            raise ValueError(f"ttl must be positive, got {ttl}")
        with self._locked() as conn, wrap_errors(self._where, "lease"):
            row = conn.execute(
                "INSERT INTO pilotfish_leases AS l (name, holder, expires_at)"
                " VALUES (%s, %s, clock_timestamp() + make_interval(secs => %s))"
                " ON CONFLICT (name) DO UPDATE"
                " SET holder = excluded.holder, expires_at = excluded.expires_at"
                " WHERE l.holder = excluded.holder OR l.expires_at < clock_timestamp()"
                " RETURNING holder",
                (name, holder, float(ttl)),
            ).fetchone()
        return row is not None

    def lease_holder(self, name: str) -> str | None:
        """Who holds the lease ``name`` now (not expired, by the database's clock), or None.
        Reads only: a replica's heartbeat lease tells the others it is alive."""
        with self._locked() as conn, wrap_errors(self._where, "lease"):
            row = conn.execute(
                "SELECT holder FROM pilotfish_leases"
                " WHERE name = %s AND expires_at >= clock_timestamp()",
                (name,),
            ).fetchone()
        return None if row is None else str(row[0])

    def release_lease(self, name: str, holder: str) -> None:
        """Give the lease up now if ``holder`` holds it, so another replica takes it at once."""
        with self._locked() as conn, wrap_errors(self._where, "lease"):
            conn.execute(
                "DELETE FROM pilotfish_leases WHERE name = %s AND holder = %s", (name, holder)
            )

    def subscribe(self, callback: Callable[[int], None]) -> Callable[[], None]:
        self._check_open()
        self._start_listener()
        return self._subscribers.add(callback)

    def close(self) -> None:
        self._closed.set()

        def wake_listener(conn: psycopg.Connection[Any]) -> None:
            # Wake the listener from its wait so it sees the store closed.
            if self._listener is not None:
                conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"{self._instance} closed"))

        self._conn.close(last=wake_listener)
        listener = self._listener
        if listener is not None and listener is not threading.current_thread():
            listener.join(timeout=10)
        self._subscribers.clear()

    # -- connections ------------------------------------------------------------------

    def _connect(self, role: str = "pilotfish") -> psycopg.Connection[Any]:
        return connect(self.dsn, self._where, timeout=self._connect_timeout, name=role)

    def _check_open(self) -> None:
        if self._closed.is_set():
            raise StoreError(f"{self._where} is closed")

    @contextmanager
    def _locked(self) -> Iterator[psycopg.Connection[Any]]:
        self._check_open()
        with self._conn.use() as conn:
            yield conn

    # -- the listener -----------------------------------------------------------------

    def _start_listener(self) -> None:
        with self._listener_lock:
            if self._listener is not None:
                return
            self._listener = threading.Thread(
                target=self._listen, name="pilotfish-store-listener", daemon=True
            )
            self._listener.start()

    def _listen(self) -> None:
        """Relay other instances' commits to subscribers until the store closes."""
        delay = 0.1
        while not self._closed.is_set():
            try:
                conn = self._connect(LISTENER_NAME)
            except StoreError as exc:
                log.warning("%s; retrying in %.1fs", exc, delay)
                self._closed.wait(delay)
                delay = min(delay * 2, 5.0)
                continue
            try:
                with conn:
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
                    delay = 0.1
                    # Whatever happened while nobody listened: catch up from the counter.
                    self._poll_revision(conn)
                    while not self._closed.is_set():
                        for notice in conn.notifies(timeout=self._poll):
                            if self._closed.is_set():
                                break
                            instance, _, text = notice.payload.partition(" ")
                            mine = instance == self._instance
                            if not mine and text.isdigit() and self._saw(int(text)):
                                self._subscribers.notify(int(text))
                        self._poll_revision(conn)
            except psycopg.Error as exc:
                if not self._closed.is_set():
                    log.warning("%s: lost the change listener (%s); reconnecting", self._where, exc)
                    self._closed.wait(delay)
                    delay = min(delay * 2, 5.0)

    def _saw(self, revision: int) -> bool:
        """Record that subscribers hear of ``revision``; False if they already did."""
        with self._latest_lock:
            if revision <= self._latest:
                return False
            self._latest = revision
            return True

    def _poll_revision(self, conn: psycopg.Connection[Any]) -> None:
        """Notify the current revision if nobody told subscribers about it yet (a lost
        notification, or commits made while the listener was reconnecting)."""
        current = _meta(conn, "revision")
        if self._saw(current) and not self._closed.is_set():
            self._subscribers.notify(current)


# -- connections and errors: shared with the other PostgreSQL tables (spans) -------------------


def connect(
    dsn: str, where: str, *, timeout: float, name: str = "pilotfish"
) -> psycopg.Connection[Any]:
    """An autocommit connection named ``name`` (``application_name``); StoreError naming
    ``where`` if the server cannot be reached."""
    try:
        return psycopg.connect(
            dsn, autocommit=True, connect_timeout=max(1, round(timeout)), application_name=name
        )
    except psycopg.Error as exc:
        raise StoreError(f"cannot open {where}: {error_message(exc)}") from None


class SharedConnection:
    """One connection that callers take turns on (``with use() as conn``), opened on first
    use and reopened on the next use once found broken. Calls are meant to be short."""

    def __init__(self, dsn: str, where: str, *, timeout: float, name: str = "pilotfish") -> None:
        self._dsn = dsn
        self._where = where
        self._timeout = timeout
        self._name = name
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        self._closed = False

    @contextmanager
    def use(self) -> Iterator[psycopg.Connection[Any]]:
        with self._lock:
            if self._closed:
                raise StoreError(f"{self._where} is closed")
            if self._conn is None or self._conn.closed or self._conn.broken:
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
                self._conn = connect(self._dsn, self._where, timeout=self._timeout, name=self._name)
            yield self._conn

    def close(self, last: Callable[[psycopg.Connection[Any]], None] | None = None) -> None:
        """Close for good; ``last(conn)`` runs first if the connection is open and sound (its
        errors are ignored: the connection is going away)."""
        with self._lock:
            self._closed = True
            if self._conn is not None:
                if last is not None and not self._conn.closed and not self._conn.broken:
                    with contextlib.suppress(psycopg.Error):
                        last(self._conn)
                self._conn.close()
                self._conn = None


# -- helpers ------------------------------------------------------------------------------


@contextmanager
def wrap_errors(where: str, what: str) -> Iterator[None]:
    try:
        yield
    except psycopg.Error as exc:
        raise StoreError(f"{where}: {what} failed: {error_message(exc)}") from exc


def error_message(exc: psycopg.Error) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def redacted(dsn: str) -> str:
    """``dsn`` without a password, for messages."""
    try:
        info = conninfo_to_dict(dsn)
    except psycopg.Error:
        return "(unparsable PostgreSQL URL)"
    host = str(info.get("host") or "localhost")
    port = str(info.get("port") or "5432")
    user = str(info.get("user") or "")
    database = str(info.get("dbname") or user)
    return f"postgresql://{user + '@' if user else ''}{host}:{port}/{database}"


def _finish(conn: psycopg.Connection[Any], statement: str) -> None:
    try:
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.execute(statement)
    except psycopg.Error:
        pass  # the transaction is gone either way; the original error is what matters


def _one(cursor: psycopg.Cursor[Any]) -> Any:
    row = cursor.fetchone()
    if row is None:
        raise StoreError("the config store's revision counter is missing")
    return row[0]


def _meta(conn: psycopg.Connection[Any], name: str) -> int:
    row = conn.execute("SELECT value FROM pilotfish_meta WHERE name = %s", (name,)).fetchone()
    return int(row[0]) if row else 0


def _lookup_row(conn: psycopg.Connection[Any], key: Key) -> tuple[Any, ...] | None:
    row: tuple[Any, ...] | None = conn.execute(
        "SELECT revision, body FROM pilotfish_objects"
        " WHERE kind = %s AND namespace = %s AND name = %s",
        (key.kind, key.namespace, key.name),
    ).fetchone()
    return row


_TOKEN_SELECT = "SELECT name, role, digest, created, created_by FROM pilotfish_api_tokens"


def _lookup(conn: psycopg.Connection[Any], key: Key) -> StoredObject | None:
    row = _lookup_row(conn, key)
    return StoredObject(key, json.loads(row[1]), int(row[0])) if row else None


def _holders(conn: psycopg.Connection[Any], addresses: set[str]) -> list[StoredObject]:
    """Services and ServiceEntries whose body mentions one of ``addresses``."""
    patterns = like_patterns(addresses)
    if not patterns:
        return []
    rows = conn.execute(
        "SELECT kind, namespace, name, revision, body FROM pilotfish_objects"
        " WHERE kind = ANY(%s) AND body LIKE ANY(%s)",
        (list(HOLDER_KINDS), patterns),
    ).fetchall()
    return [StoredObject(Key(k, ns, n), json.loads(b), int(r)) for k, ns, n, r, b in rows]


def _write(conn: psycopg.Connection[Any], events: Sequence[Event]) -> None:
    upserts: list[tuple[Any, ...]] = []
    entries: list[tuple[Any, ...]] = []
    with conn.cursor() as cur:
        for event in events:
            obj = event.object
            body = json.dumps(obj.body, separators=(",", ":"))
            entries.append((event.revision, event.type, obj.kind, obj.namespace, obj.name, body))
            if event.type == "DELETED":
                # Flush pending upserts first: operations on one key must apply in order.
                _upsert(cur, upserts)
                upserts = []
                cur.execute(
                    "DELETE FROM pilotfish_objects WHERE kind = %s AND namespace = %s"
                    " AND name = %s",
                    (obj.kind, obj.namespace, obj.name),
                )
            else:
                upserts.append((obj.kind, obj.namespace, obj.name, event.revision, body))
        _upsert(cur, upserts)
        cur.executemany(
            "INSERT INTO pilotfish_events (revision, type, kind, namespace, name, body)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            entries,
        )
        cur.execute(
            "UPDATE pilotfish_meta SET value = %s WHERE name = 'revision'",
            (events[-1].revision,),
        )


def _upsert(cur: psycopg.Cursor[Any], rows: list[tuple[Any, ...]]) -> None:
    if rows:
        cur.executemany(
            "INSERT INTO pilotfish_objects (kind, namespace, name, revision, body)"
            " VALUES (%s, %s, %s, %s, %s)"
            " ON CONFLICT (kind, namespace, name)"
            " DO UPDATE SET revision = excluded.revision, body = excluded.body",
            rows,
        )


def _compact(conn: psycopg.Connection[Any], revision: int, keep: int) -> None:
    floor = revision - keep
    if floor > _meta(conn, "compacted"):
        conn.execute("DELETE FROM pilotfish_events WHERE revision <= %s", (floor,))
        conn.execute("UPDATE pilotfish_meta SET value = %s WHERE name = 'compacted'", (floor,))


def _migrate(conn: psycopg.Connection[Any], where: str) -> None:
    apply_migrations(conn, where, _MIGRATIONS, table="pilotfish_schema", lock_key=_MIGRATION_LOCK)


def apply_migrations(
    conn: psycopg.Connection[Any],
    where: str,
    migrations: Sequence[tuple[int, str]],
    *,
    table: str,
    lock_key: int,
    schema: str | None = None,
) -> None:
    """Bring a schema to the last of ``migrations`` in one transaction, under the advisory
    lock ``lock_key`` (replicas starting together migrate once); refuse a newer one.

    ``table`` records the versions applied; ``schema``, when given, is created first (the
    tables of ``migrations`` live in it). Each migration is statements separated by ``;``.
    Raises StoreError naming ``where``."""
    latest = migrations[-1][0]
    try:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key,))
            if schema is not None:
                conn.execute(
                    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema))
                )
            conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} ("
                    " version INTEGER PRIMARY KEY,"
                    " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
                ).format(sql.SQL(table))
            )
            row = conn.execute(
                sql.SQL("SELECT max(version) FROM {}").format(sql.SQL(table))
            ).fetchone()
            version = int(row[0]) if row and row[0] is not None else 0
            if version > latest:
                raise StoreError(
                    f"{where} has schema version {version}; this Pilotfish reads up to"
                    f" version {latest} (upgrade Pilotfish)"
                )
            for number, statements in migrations:
                if number <= version:
                    continue
                for statement in statements.split(";"):
                    if statement.strip():
                        conn.execute(statement.encode())
                conn.execute(
                    sql.SQL("INSERT INTO {} (version) VALUES (%s)").format(sql.SQL(table)),
                    (number,),
                )
                log.info("%s: applied schema version %d", where, number)
    except psycopg.Error as exc:
        raise StoreError(f"cannot open {where}: {error_message(exc)}") from None


_EVENT_TYPES: dict[str, EventType] = {
    "ADDED": "ADDED",
    "MODIFIED": "MODIFIED",
    "DELETED": "DELETED",
}


def _event(revision: int, type_: str, kind: str, namespace: str, name: str, body: str) -> Event:
    obj = StoredObject(Key(kind, namespace, name), json.loads(body), int(revision))
    return Event(_EVENT_TYPES[type_], int(revision), obj)
