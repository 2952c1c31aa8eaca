"""The durable stores, SQLite on a real file and PostgreSQL on a throwaway cluster: reopening,
the on-disk format and schema versions, several processes at once, and (PostgreSQL) commits
of one instance heard by another's subscribers and watches."""

from __future__ import annotations

import asyncio
import itertools
import os
import sqlite3
import stat
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import pilotfish
from pilotfish.config.store import Delete, Key, Put, SqliteStore, Store, open_store, watch
from pilotfish.errors import CompactedError, StoreError
from tests.postgres import PostgresCluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """What ``open_store`` opens: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "config.db")
    cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
    return cluster.new_database()


@pytest.fixture
def pg_url(postgres_cluster: PostgresCluster) -> str:
    return postgres_cluster.new_database()


def vs(name: str, *hosts: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"hosts": list(hosts) or [name]},
    }


def child_env() -> dict[str, str]:
    root = str(Path(pilotfish.__file__).resolve().parent.parent)
    extra = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{extra}" if extra else root}


WRITER = r"""
import sys
from pilotfish.config.store import Put, open_store

url, prefix, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = open_store(url)
print("ready", flush=True)
sys.stdin.readline()  # start together with the others
for i in range(count):
    body = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": f"{prefix}-{i}", "namespace": "default"},
        "spec": {"hosts": [f"{prefix}-{i}"]},
    }
    store.commit([Put(body), Put({**body, "spec": {"hosts": [f"{prefix}-{i}", "again"]}})])
store.close()
"""


def run_writer(url: str | Path, prefix: str, count: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(url), prefix, str(count)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
    )


def start(procs: list[subprocess.Popen[str]]) -> None:
    """Wait until every writer opened the store, then let them all go at once."""
    for proc in procs:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready", proc.stderr and proc.stderr.read()
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()


def finish(proc: subprocess.Popen[str]) -> None:
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err


def test_reopening_restores_everything(store_url: str) -> None:
    store = open_store(store_url, keep_events=3)
    store.commit([Put(vs("a")), Put(vs("b"))])
    store.commit([Put(vs("a", "a", "a.default"))])
    store.commit([Delete(Key("VirtualService", "default", "b"))])
    store.commit([Put(vs("c"))])
    before = (store.revision(), store.list(), store.events_since(2))
    store.close()

    again = open_store(store_url, keep_events=3)
    try:
        assert (again.revision(), again.list(), again.events_since(2)) == before
        assert again.revision() == 5
        with pytest.raises(CompactedError):
            again.events_since(1)
        a = again.get(Key("VirtualService", "default", "a"))
        assert a is not None
        assert a.body["metadata"]["generation"] == 2
        # The counter continues where it was, even after the highest-revision object went.
        again.commit([Delete(Key("VirtualService", "default", "c"))])
    finally:
        again.close()
    third = open_store(store_url)
    try:
        assert third.revision() == 6
        assert third.commit([Put(vs("d"))]).revision == 7
    finally:
        third.close()


def test_file_format(tmp_path: Path) -> None:
    db = tmp_path / "data" / "config.db"
    store = SqliteStore(db)
    store.commit([Put(vs("a"))])
    try:
        assert stat.S_IMODE(db.stat().st_mode) == 0o600
        with sqlite3.connect(db) as raw:
            assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert raw.execute("PRAGMA user_version").fetchone()[0] == 2
            tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master")}
            assert {"meta", "objects", "events", "audit", "api_tokens"} <= tables
            assert raw.execute("SELECT value FROM meta WHERE name = 'revision'").fetchone() == (1,)
        raw.close()
    finally:
        store.close()


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "config.db"
    SqliteStore(db).close()
    raw = sqlite3.connect(db)
    raw.execute("PRAGMA user_version = 99")
    raw.close()
    with pytest.raises(StoreError, match="schema version 99"):
        SqliteStore(db)


def test_writes_from_another_process_are_seen(store_url: str) -> None:
    store = open_store(store_url)
    try:
        store.commit([Put(vs("mine"))])
        writer = run_writer(store_url, "other", 5)
        start([writer])
        finish(writer)
        assert store.revision() == 11
        names = [o.name for o in store.list("VirtualService", "default")]
        assert names == sorted(["mine", *(f"other-{i}" for i in range(5))])
        assert [e.revision for e in store.events_since(0)] == list(range(1, 12))
    finally:
        store.close()


def test_processes_writing_at_once_share_one_revision_sequence(store_url: str) -> None:
    open_store(store_url).close()  # create the file or schema before the writers race for it
    count = 120
    writers = [run_writer(store_url, f"w{n}", count) for n in range(3)]
    store = open_store(store_url)
    try:
        start(writers)
        mine = [store.commit([Put(vs(f"parent-{i}"))]).revision for i in range(count)]
        for proc in writers:
            finish(proc)
        total = 3 * count * 2 + count
        assert store.revision() == total
        assert mine == sorted(mine)
        log = store.events_since(0)
        assert [e.revision for e in log] == list(range(1, total + 1))
        assert len(store.list()) == 4 * count
        # Every writer's put and update landed on consecutive revisions (one transaction).
        for e, nxt in itertools.pairwise(log):
            if e.type == "ADDED" and not e.object.name.startswith("parent-"):
                assert (nxt.type, nxt.object.name) == ("MODIFIED", e.object.name)
    finally:
        store.close()
        for proc in writers:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


async def test_watch_on_a_durable_store_from_threads(store_url: str) -> None:
    store = open_store(store_url)
    try:
        stream = watch(store, 0)
        writer = asyncio.create_task(
            asyncio.to_thread(lambda: [store.commit([Put(vs(f"t{i}"))]) for i in range(30)])
        )
        got = [(await asyncio.wait_for(anext(stream), 30)).revision for _ in range(30)]
        await writer
        await stream.aclose()
        assert got == list(range(1, 31))
    finally:
        store.close()


# -- PostgreSQL: schema versions and replicas sharing one database -------------------------


def test_postgres_schema_versions(pg_url: str) -> None:
    import psycopg

    from pilotfish.config.store.postgres import SCHEMA_VERSION, PostgresStore

    PostgresStore(pg_url).close()
    PostgresStore(pg_url).close()  # reopening applies nothing twice
    with psycopg.connect(pg_url, autocommit=True) as raw:
        versions = [r[0] for r in raw.execute("SELECT version FROM pilotfish_schema")]
        assert versions == list(range(1, SCHEMA_VERSION + 1))
        tables = {
            r[0]
            for r in raw.execute(
                "SELECT tablename FROM pg_tables WHERE tablename LIKE 'pilotfish_%'"
            )
        }
        assert tables == {
            "pilotfish_leases",
            "pilotfish_schema",
            "pilotfish_meta",
            "pilotfish_objects",
            "pilotfish_events",
            "pilotfish_audit",
            "pilotfish_api_tokens",
        }
        # A database left at version 1 (before leases) is brought up to date, data kept.
        raw.execute("INSERT INTO pilotfish_meta VALUES ('marker', 7)")
        raw.execute("DROP TABLE pilotfish_leases")
        raw.execute("DROP TABLE pilotfish_audit")
        raw.execute("DROP TABLE pilotfish_api_tokens")
        raw.execute("DELETE FROM pilotfish_schema WHERE version > 1")
    PostgresStore(pg_url).close()
    with psycopg.connect(pg_url, autocommit=True) as raw:
        versions = [r[0] for r in raw.execute("SELECT version FROM pilotfish_schema")]
        assert versions == list(range(1, SCHEMA_VERSION + 1))
        raw.execute("SELECT count(*) FROM pilotfish_leases")
        assert raw.execute("SELECT value FROM pilotfish_meta WHERE name = 'marker'").fetchone()
        raw.execute("INSERT INTO pilotfish_schema (version) VALUES (99)")
    with pytest.raises(StoreError, match="schema version 99"):
        PostgresStore(pg_url)


def test_postgres_replicas_starting_together_migrate_once(pg_url: str) -> None:
    from pilotfish.config.store.postgres import PostgresStore

    opened: list[Store] = []
    errors: list[BaseException] = []
    go = threading.Barrier(6)

    def replica() -> None:
        try:
            go.wait()
            opened.append(PostgresStore(pg_url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=replica) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        opened[0].commit([Put(vs("a"))])
        assert all(s.revision() == 1 for s in opened)
    finally:
        for s in opened:
            s.close()


def wait_for(check: Callable[[], bool], timeout: float = 10) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.02)


def test_postgres_subscribers_hear_commits_of_other_instances(pg_url: str) -> None:
    from pilotfish.config.store.postgres import PostgresStore

    a, b = PostgresStore(pg_url), PostgresStore(pg_url, poll_interval=60)
    try:
        heard: list[int] = []
        b.subscribe(heard.append)
        wait_for(lambda: _listening(b))
        a.commit([Put(vs("one"))])
        a.commit([Put(vs("two")), Put(vs("three"))])
        wait_for(lambda: heard[-1:] == [3])
        assert heard == sorted(heard)
        assert [e.object.name for e in b.events_since(0)] == ["one", "two", "three"]
    finally:
        a.close()
        b.close()


def test_postgres_listener_catches_up_after_losing_its_connection(pg_url: str) -> None:
    """Commits made while the listener is disconnected reach subscribers when it is back."""
    import psycopg

    from pilotfish.config.store.postgres import PostgresStore

    a, b = PostgresStore(pg_url), PostgresStore(pg_url, poll_interval=60)
    try:
        heard: list[int] = []
        b.subscribe(heard.append)
        wait_for(lambda: _listening(b))
        with psycopg.connect(pg_url, autocommit=True) as admin:
            # Cut every listener off, then commit before it is back.
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = 'pilotfish-listener'"
                " AND datname = current_database()"
            )
        a.commit([Put(vs("while-away"))])
        wait_for(lambda: 1 in heard)
        a.commit([Put(vs("after"))])
        wait_for(lambda: 2 in heard)
    finally:
        a.close()
        b.close()


async def test_postgres_watch_follows_another_instance(pg_url: str) -> None:
    from pilotfish.config.store.postgres import PostgresStore

    writer, reader = PostgresStore(pg_url), PostgresStore(pg_url, poll_interval=60)
    try:
        writer.commit([Put(vs("before"))])
        stream = watch(reader, 0)
        first = await asyncio.wait_for(anext(stream), 10)
        task = asyncio.create_task(
            asyncio.to_thread(lambda: [writer.commit([Put(vs(f"w{i}"))]) for i in range(20)])
        )
        got = [(await asyncio.wait_for(anext(stream), 10)).revision for _ in range(20)]
        await task
        await stream.aclose()
        assert [first.revision, *got] == list(range(1, 22))
    finally:
        writer.close()
        reader.close()


def _listening(store: Any) -> bool:
    """True once ``store``'s listener is connected (seen from the server's side); from then on
    a commit reaches it, by NOTIFY or by the catch-up that follows its LISTEN."""
    import psycopg

    with psycopg.connect(store.dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pilotfish-listener'"
            " AND datname = current_database()"
        ).fetchone()
    return bool(row and row[0] > 0)


LEASE_HOLDER = r"""
import sys, time
from pilotfish.config.store.postgres import PostgresStore

store = PostgresStore(sys.argv[1])
while True:
    print("held" if store.try_lease("leader", "replica-a", 1.0) else "waiting", flush=True)
    time.sleep(0.2)
"""


def test_postgres_lease_moves_to_another_replica_when_the_leader_is_killed(pg_url: str) -> None:
    import time

    from pilotfish.config.store.postgres import PostgresStore

    leader = subprocess.Popen(
        [sys.executable, "-c", LEASE_HOLDER, pg_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    other = PostgresStore(pg_url)
    try:
        assert leader.stdout is not None
        assert leader.stdout.readline().strip() == "held"
        # While the leader renews, nobody else gets the lease (well past its 1 s TTL).
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            assert not other.try_lease("leader", "replica-b", 1.0)
            time.sleep(0.1)
        leader.kill()
        leader.wait(10)
        # Taken over once the TTL ran out (how soon is not asserted: the wait is bounded).
        wait_for(lambda: other.try_lease("leader", "replica-b", 1.0), timeout=10)
        assert other.try_lease("leader", "replica-b", 1.0)  # renewing is fine
        other.release_lease("leader", "replica-b")
        assert other.try_lease("leader", "replica-c", 1.0)  # released: taken at once
    finally:
        if leader.poll() is None:
            leader.kill()
            leader.wait()
        other.close()


# -- API tokens and the audit log, both backends ---------------------------------------------


def test_audit_entries_are_written_with_their_commit(store_url: str) -> None:
    from pilotfish.config.store.access import AuditEntry
    from pilotfish.errors import NotFoundError

    store = open_store(store_url)
    try:
        who = AuditEntry(user="deployer", role="admin", verb="apply",
                         objects=({"kind": "VirtualService", "name": "a"},))  # fmt: skip
        first = store.commit([Put(vs("a"))], audit=who)
        store.commit([Put(vs("a"))], audit=who)  # no change: no entry
        with pytest.raises(NotFoundError):  # refused: no entry
            store.commit([Put(vs("b")), Delete(Key("VirtualService", "default", "zz"))], audit=who)
        gone = store.commit([Delete(Key("VirtualService", "default", "a"))],
                            audit=AuditEntry(user="ops", role="admin", verb="delete"))  # fmt: skip
        entries = store.audit_log()
        assert [(e.user, e.verb, e.revision) for e in entries] == [
            ("deployer", "apply", first.revision),
            ("ops", "delete", gone.revision),
        ]
        assert entries[0].objects == ({"kind": "VirtualService", "name": "a"},)
        assert entries[0].id < entries[1].id and entries[0].time.endswith("Z")
        assert store.audit_log(after=entries[0].id) == [entries[1]]
        assert store.audit_log(limit=1) == [entries[1]]
    finally:
        store.close()
    reopened = open_store(store_url)  # on disk / in the database
    try:
        assert [e.user for e in reopened.audit_log()] == ["deployer", "ops"]
    finally:
        reopened.close()


def test_api_tokens_are_kept_as_digests_and_audited(store_url: str) -> None:
    from pilotfish.config.store.access import ApiToken, AuditEntry, digest
    from pilotfish.errors import AlreadyExistsError, NotFoundError

    store = open_store(store_url)
    other = open_store(store_url)  # another replica (or process) on the same store
    try:
        made = AuditEntry(user="admin", role="admin", verb="create")
        token = ApiToken(
            "viewer", "read-only", digest("pft_secret"), "2026-01-01T00:00:00Z", "admin"
        )
        store.add_api_token(token, made)
        with pytest.raises(AlreadyExistsError, match='tokens "viewer" already exists'):
            store.add_api_token(token, made)
        assert other.api_token(digest("pft_secret")) == token
        assert other.api_token(digest("pft_other")) is None
        assert [t.name for t in other.api_tokens()] == ["viewer"]
        revoked = AuditEntry(user="admin", role="admin", verb="delete")
        assert other.remove_api_token("viewer", revoked) == token
        with pytest.raises(NotFoundError):
            store.remove_api_token("viewer", revoked)
        assert store.api_token(digest("pft_secret")) is None
        # Two entries (create, delete): the refused ones wrote none; no config revision moved.
        assert [(e.verb, e.revision) for e in store.audit_log()] == [("create", 0), ("delete", 0)]
    finally:
        other.close()
        store.close()
