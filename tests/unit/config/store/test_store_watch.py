"""watch(): every event after a revision, in order, across reconnects and threads."""

from __future__ import annotations

import asyncio
import threading
from typing import cast

import pytest

from pilotfish.config.store import Delete, Event, Key, Operation, Put, Store, Watcher, watch
from pilotfish.errors import CompactedError

from .conftest import MakeStore
from .helpers import vs

pytestmark = pytest.mark.timeout(60)


async def take(stream: Watcher, count: int) -> list[Event]:
    out: list[Event] = []
    async for event in stream:
        out.append(event)
        if len(out) == count:
            break
    return out


async def test_watch_replays_then_follows(store: Store) -> None:
    store.commit([Put(vs("a")), Put(vs("b"))])
    stream = watch(store, 0)
    first = [await anext(stream), await anext(stream)]
    assert [(e.type, e.object.name, e.revision) for e in first] == [
        ("ADDED", "a", 1),
        ("ADDED", "b", 2),
    ]
    pending = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0)
    assert not pending.done()
    store.commit([Delete(Key("VirtualService", "default", "a"))])
    event = await asyncio.wait_for(pending, 10)
    assert (event.type, event.object.name, event.revision) == ("DELETED", "a", 3)
    await stream.aclose()


async def test_watch_from_a_revision_skips_older_events(store: Store) -> None:
    store.commit([Put(vs(f"vs{i}")) for i in range(5)])
    stream = watch(store, 3)
    assert [(await anext(stream)).revision for _ in range(2)] == [4, 5]
    await stream.aclose()


async def test_watch_too_old_raises_compacted(make_store: MakeStore) -> None:
    store = make_store(keep_events=2)
    store.commit([Put(vs(f"vs{i}")) for i in range(5)])
    with pytest.raises(CompactedError):
        await anext(watch(store, 1))


async def test_reconnecting_reader_gets_exactly_the_missed_events(store: Store) -> None:
    """A reader reads some, disconnects while writes go on, reconnects with its last revision."""
    seen: list[Event] = []
    expected_total = 0
    for round_ in range(4):
        # Writes while the reader is away: puts, updates, deletes.
        ops: list[Operation] = [Put(vs(f"r{round_}-{i}")) for i in range(3)]
        ops.append(Put(vs("shared", hosts=[f"h{round_}"])))
        if round_:
            ops.append(Delete(Key("VirtualService", "default", f"r{round_ - 1}-0")))
        expected_total += len(store.commit(ops).events)
        last = seen[-1].revision if seen else 0
        watcher = Watcher(store, last, batch=2)  # small batches: several reads per round
        # Read some of what is there, more arrives while reading.
        got = await take(watcher, 2)
        store.commit([Put(vs(f"late{round_}"))])
        expected_total += 1
        got += await take(watcher, expected_total - len(seen) - 2)
        watcher.close()
        seen += got
    revisions = [e.revision for e in seen]
    assert revisions == list(range(1, store.revision() + 1))
    assert [e.revision for e in store.events_since(0)] == revisions
    # The events describe the store: replaying them gives the current objects.
    state: dict[Key, int] = {}
    for e in seen:
        if e.type == "DELETED":
            del state[e.object.key]
        else:
            state[e.object.key] = e.revision
    assert state == {o.key: o.revision for o in store.list()}


async def test_commits_from_other_threads_wake_the_watcher(store: Store) -> None:
    total = 60
    stream = Watcher(store, 0)
    start = threading.Event()

    def writer(prefix: str) -> None:
        start.wait()
        for i in range(total // 3):
            store.commit([Put(vs(f"{prefix}{i}"))])

    threads = [threading.Thread(target=writer, args=(p,)) for p in "abc"]
    for t in threads:
        t.start()
    try:
        start.set()
        events = await asyncio.wait_for(take(stream, total), 30)
    finally:
        for t in threads:
            t.join()
        stream.close()
    assert [e.revision for e in events] == list(range(1, total + 1))
    assert sorted(e.object.name for e in events) == sorted(o.name for o in store.list())


async def test_a_commit_between_read_and_wait_is_not_missed(store: Store) -> None:
    """The commit lands right after the watcher's read found nothing, before it waits."""
    watcher = Watcher(store, 0)
    real_events_since = store.events_since
    committed = False

    def events_since_then_commit(revision: int, limit: int | None = None) -> list[Event]:
        nonlocal committed
        found = real_events_since(revision, limit)
        if not found and not committed:
            committed = True
            store.commit([Put(vs("sneaky"))])
        return found

    watcher.store = cast(Store, _Proxy(store, events_since_then_commit))
    event = await asyncio.wait_for(anext(watcher), 10)
    assert (event.object.name, event.revision) == ("sneaky", 1)
    watcher.close()


async def test_close_ends_a_waiting_watcher(store: Store) -> None:
    watcher = Watcher(store, 0)
    pending = asyncio.ensure_future(anext(watcher))
    await asyncio.sleep(0)
    watcher.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(pending, 10)
    # Closed watchers no longer subscribe: commits do not reach them.
    store.commit([Put(vs("a"))])
    with pytest.raises(StopAsyncIteration):
        await anext(watcher)


class _Proxy:
    """A store whose events_since is replaced, everything else delegated."""

    def __init__(self, store: Store, events_since: object) -> None:
        self._store = store
        self.events_since = events_since

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)
