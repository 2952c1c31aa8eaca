"""SqliteStore on a real file: reopening, the on-disk format, and several processes at once."""

from __future__ import annotations

import asyncio
import itertools
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import pilotfish
from pilotfish.config.store import Delete, Key, Put, SqliteStore, open_store, watch
from pilotfish.errors import CompactedError, StoreError

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


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
from pilotfish.config.store import Put, SqliteStore

path, prefix, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = SqliteStore(path)
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


def run_writer(db: Path, prefix: str, count: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db), prefix, str(count)],
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


def test_reopening_restores_everything(tmp_path: Path) -> None:
    db = tmp_path / "config.db"
    store = SqliteStore(db, keep_events=3)
    store.commit([Put(vs("a")), Put(vs("b"))])
    store.commit([Put(vs("a", "a", "a.default"))])
    store.commit([Delete(Key("VirtualService", "default", "b"))])
    store.commit([Put(vs("c"))])
    before = (store.revision(), store.list(), store.events_since(2))
    store.close()

    again = SqliteStore(db, keep_events=3)
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
    third = open_store(str(tmp_path))
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
            assert raw.execute("PRAGMA user_version").fetchone()[0] == 1
            tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master")}
            assert {"meta", "objects", "events"} <= tables
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


def test_writes_from_another_process_are_seen(tmp_path: Path) -> None:
    db = tmp_path / "config.db"
    store = SqliteStore(db)
    try:
        store.commit([Put(vs("mine"))])
        writer = run_writer(db, "other", 5)
        start([writer])
        finish(writer)
        assert store.revision() == 11
        names = [o.name for o in store.list("VirtualService", "default")]
        assert names == sorted(["mine", *(f"other-{i}" for i in range(5))])
        assert [e.revision for e in store.events_since(0)] == list(range(1, 12))
    finally:
        store.close()


def test_processes_writing_at_once_share_one_revision_sequence(tmp_path: Path) -> None:
    db = tmp_path / "config.db"
    SqliteStore(db).close()  # create the file before the writers race for it
    count = 120
    writers = [run_writer(db, f"w{n}", count) for n in range(3)]
    store = SqliteStore(db)
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


async def test_watch_on_a_file_store_from_threads(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "config.db")
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
