"""Several threads committing at once: revisions stay strictly ordered, no update is lost."""

from __future__ import annotations

import threading

import pytest

from pilotfish.config.store import Key, Put, Store
from pilotfish.errors import ConflictError

from .helpers import vs

pytestmark = pytest.mark.timeout(120)

THREADS = 4
INCREMENTS = 25
COUNTER = Key("VirtualService", "default", "counter")


def counter_body(value: int) -> dict[str, object]:
    return vs("counter", hosts=["counter"], http=[{"name": f"n{value}"}])


def counter_value(store: Store) -> tuple[int, int]:
    obj = store.get(COUNTER)
    assert obj is not None
    return int(obj.body["spec"]["http"][0]["name"][1:]), obj.revision


def test_optimistic_increments_are_never_lost(store: Store) -> None:
    store.commit([Put(counter_body(0))])
    start = threading.Barrier(THREADS)
    revisions: list[list[int]] = [[] for _ in range(THREADS)]
    conflicts = [0] * THREADS
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            start.wait()
            done = 0
            while done < INCREMENTS:
                value, revision = counter_value(store)
                try:
                    result = store.commit(
                        [Put(counter_body(value + 1), expected_revision=revision)]
                    )
                except ConflictError:
                    conflicts[n] += 1
                    continue
                revisions[n].append(result.revision)
                done += 1
        except BaseException as exc:  # surfaced in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    total = THREADS * INCREMENTS
    assert counter_value(store) == (total, total + 1)
    # Each thread saw its own commits in strictly increasing order, and no two commits
    # anywhere shared a revision.
    for mine in revisions:
        assert mine == sorted(mine)
    everyone = sorted(r for mine in revisions for r in mine)
    assert everyone == list(range(2, total + 2))
    log = store.events_since(0)
    assert [e.revision for e in log] == list(range(1, total + 2))
    assert [e.object.body["spec"]["http"][0]["name"] for e in log] == [
        f"n{i}" for i in range(total + 1)
    ]


def test_parallel_blind_writes_get_distinct_consecutive_revisions(store: Store) -> None:
    start = threading.Barrier(THREADS)
    results: list[list[int]] = [[] for _ in range(THREADS)]

    def worker(n: int) -> None:
        start.wait()
        for i in range(INCREMENTS):
            result = store.commit([Put(vs(f"t{n}-{i}")), Put(vs(f"t{n}-{i}-b"))])
            results[n].append(result.revision)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everyone = sorted(r for mine in results for r in mine)
    # Two writes per commit: each commit ends on an even revision.
    assert everyone == list(range(2, 2 * THREADS * INCREMENTS + 1, 2))
    for mine in results:
        assert mine == sorted(mine)
    log = store.events_since(0)
    assert [e.revision for e in log] == list(range(1, 2 * THREADS * INCREMENTS + 1))
    # The two writes of one commit are adjacent in the log.
    for first, second in zip(log[::2], log[1::2], strict=True):
        assert second.object.name == first.object.name + "-b"
