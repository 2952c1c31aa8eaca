"""A writer killed with SIGKILL at random moments never leaves half a commit behind.

A child process commits batches in a loop against a real SQLite file, or a PostgreSQL database
on the session's throwaway cluster (the same test for both durable backends). Each batch b, in
one commit: creates 200 objects ``b<b>-<i>`` labelled ``batch=b``, relabels the 100
``shared-<i>`` objects to ``batch=b``, and deletes the objects of batch b-2. The child prints
each batch number after its commit returns. The test kills it at random moments (sometimes
before it even opened the store), reopens the store and checks, each time:

* every batch is entirely present or entirely absent, and exactly batches M-1 and M are
  present, where M is the batch every ``shared-<i>`` object carries (all carry the same);
* every batch the child reported as committed is there (commits are durable);
* the revision counter equals the number of events, the log has no gaps, and replaying the
  log from 0 gives exactly the stored objects.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import pilotfish
from pilotfish.config.store import Key, open_store
from tests.postgres import PostgresCluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

NEW = 200
SHARED = 100
ROUNDS = 8
KEEP_ALL = 10**9

WRITER = r"""
import sys
from pilotfish.config.store import Delete, Key, Put, open_store

NEW, SHARED = int(sys.argv[2]), int(sys.argv[3])
store = open_store(sys.argv[1], keep_events=int(sys.argv[4]))


def body(name, batch):
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": name, "namespace": "crash", "labels": {"batch": str(batch)}},
        "spec": {"hosts": [name + ".example.com"], "ports": [{"number": batch, "name": "p"}]},
    }


shared = store.get(Key("ServiceEntry", "crash", "shared-0"))
batch = int(shared.body["metadata"]["labels"]["batch"]) if shared else 0
print("ready", batch, flush=True)
while True:
    batch += 1
    ops = [Put(body(f"b{batch}-{i}", batch), create_only=True) for i in range(NEW)]
    ops += [Put(body(f"shared-{i}", batch)) for i in range(SHARED)]
    if batch > 2:
        ops += [Delete(Key("ServiceEntry", "crash", f"b{batch - 2}-{i}")) for i in range(NEW)]
    store.commit(ops)
    print("committed", batch, flush=True)
"""


def package_root() -> str:
    """The directory holding the ``pilotfish`` package, for the child's import path."""
    root = str(Path(pilotfish.__file__).resolve().parent.parent)
    extra = os.environ.get("PYTHONPATH")
    return f"{root}{os.pathsep}{extra}" if extra else root


class Writer:
    """The child process and the batch numbers it reported."""

    def __init__(self, db: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(db), str(NEW), str(SHARED), str(KEEP_ALL)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": package_root()},
        )
        self.committed: list[int] = []
        self.first_commit = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            words = line.split()
            if words and words[0] == "committed":
                self.committed.append(int(words[1]))
                self.first_commit.set()

    def wait_for_commit(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.first_commit.wait(timeout=0.1):
                return True
            if self.proc.poll() is not None:
                return self.first_commit.is_set()
        return False

    def kill(self) -> str:
        """SIGKILL the child (if still alive); returns its stderr."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._reader.join(timeout=30)
        assert self.proc.stderr is not None
        err = self.proc.stderr.read()
        self.proc.stderr.close()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return err


def check_store(db: str, reported: list[int]) -> int:
    """Check every invariant of the module docstring; returns the last batch present."""
    store = open_store(db, keep_events=KEEP_ALL)
    try:
        objects = {o.key: o for o in store.list()}
        events = store.events_since(0)
        revision = store.revision()
    finally:
        store.close()

    # The log: no gaps, the counter equals its length, and it replays to the objects.
    assert [e.revision for e in events] == list(range(1, len(events) + 1))
    assert revision == len(events)
    replayed: dict[Key, dict[str, Any]] = {}
    for e in events:
        if e.type == "DELETED":
            del replayed[e.object.key]
        else:
            assert e.type == ("MODIFIED" if e.object.key in replayed else "ADDED")
            replayed[e.object.key] = e.object.body
    assert replayed == {k: o.body for k, o in objects.items()}

    def batch_of(obj_body: dict[str, Any]) -> int:
        return int(obj_body["metadata"]["labels"]["batch"])

    shared = [o for k, o in objects.items() if k.name.startswith("shared-")]
    if not shared:
        assert objects == {}, "objects without the shared set: a first batch was split"
        assert reported == []
        return 0
    assert len(shared) == SHARED
    last = {batch_of(o.body) for o in shared}
    assert len(last) == 1, f"shared objects carry different batches: {sorted(last)}"
    (m,) = last
    by_batch: dict[int, set[str]] = {}
    for k, o in objects.items():
        if not k.name.startswith("shared-"):
            by_batch.setdefault(batch_of(o.body), set()).add(k.name)
    assert sorted(by_batch) == [b for b in (m - 1, m) if b >= 1]
    for b, names in by_batch.items():
        assert names == {f"b{b}-{i}" for i in range(NEW)}, f"batch {b} is partial"
    # Durable: everything the writer saw committed is there (it may have committed one
    # more that it did not get to print).
    assert all(b <= m for b in reported), f"reported {max(reported)} but store holds {m}"
    assert not reported or m - max(reported) <= 1
    # Each commit's events are contiguous: sizes follow the batch layout exactly.
    expected_events = sum(NEW + SHARED + (NEW if b > 2 else 0) for b in range(1, m + 1))
    assert revision == expected_events
    return m


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "config.db")
    cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
    return cluster.new_database()


def test_sigkill_never_leaves_a_partial_commit(store_url: str) -> None:
    db = store_url
    rng = random.Random()
    seed = rng.randrange(2**32)
    rng.seed(seed)
    last = 0
    reported: list[int] = []
    for round_ in range(ROUNDS):
        writer = Writer(db)
        try:
            if round_ == 1:
                time.sleep(rng.uniform(0, 0.05))  # possibly before the store is even open
            else:
                assert writer.wait_for_commit(timeout=60), "the writer never committed"
                time.sleep(rng.uniform(0, 0.3))
        finally:
            err = writer.kill()
        assert "Traceback" not in err, f"(seed {seed}) writer failed:\n{err}"
        reported += writer.committed
        current = check_store(db, reported)
        assert current >= last, f"(seed {seed}) batches went back from {last} to {current}"
        last = current
    assert last >= ROUNDS - 1, f"(seed {seed}) the writer made too little progress to test"
