"""Watching a store from asyncio: every event after a revision, in order, then new ones.

``watch(store, from_revision)`` is an async iterator over ``Event``. It subscribes before its
first read, so a commit landing between a read and the wait still wakes it; store commit
callbacks may come from any thread and only set an ``asyncio.Event`` through
``loop.call_soon_threadsafe``. The events themselves are always read with
``events_since(last_seen)``, so the stream has no gaps and no duplicates whatever order the
wake-ups arrive in. A reader that reconnects with the last revision it saw gets exactly what
it missed, or CompactedError if those events are no longer kept (then: list and start over).

``Watcher`` is the same as an object, for consumers that want to know ``last_revision`` or
close it explicitly.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable

from pilotfish.config.store.base import Event, Store

#: Events read from the store per call, so one call never holds the store long.
DEFAULT_BATCH = 500


class Watcher:
    """An async iterator over the events of ``store`` after ``from_revision``.

    CompactedError is raised at the first ``__anext__`` if ``from_revision`` is too old.
    """

    def __init__(self, store: Store, from_revision: int, *, batch: int = DEFAULT_BATCH) -> None:
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        self.store = store
        self.last_revision = from_revision
        self._batch = batch
        self._pending: list[Event] = []
        self._wake: asyncio.Event | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._closed = False

    def __aiter__(self) -> Watcher:
        return self

    async def __anext__(self) -> Event:
        if self._closed:
            raise StopAsyncIteration
        wake = self._start()
        while not self._pending:
            # Clear before reading: a commit after this point sets it again.
            wake.clear()
            self._pending = self.store.events_since(self.last_revision, limit=self._batch)
            if not self._pending:
                await wake.wait()
                if self._closed:
                    raise StopAsyncIteration
        event = self._pending.pop(0)
        self.last_revision = event.revision
        return event

    def close(self) -> None:
        """Stop watching; a pending ``__anext__`` ends with StopAsyncIteration."""
        self._closed = True
        self._stop()
        if self._wake is not None:
            self._wake.set()

    async def aclose(self) -> None:
        self.close()

    async def __aenter__(self) -> Watcher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def _start(self) -> asyncio.Event:
        if self._wake is not None:
            return self._wake
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()

        def on_commit(_revision: int) -> None:
            # A closed loop raises RuntimeError: nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(wake.set)

        self._wake = wake
        self._unsubscribe = self.store.subscribe(on_commit)
        return wake

    def _stop(self) -> None:
        unsubscribe, self._unsubscribe = self._unsubscribe, None
        if unsubscribe is not None:
            unsubscribe()


async def watch(store: Store, from_revision: int) -> AsyncGenerator[Event, None]:
    """Yield every event of ``store`` after ``from_revision`` in order, forever.

    Raises CompactedError if ``from_revision`` is older than the kept events.
    """
    watcher = Watcher(store, from_revision)
    try:
        async for event in watcher:
            yield event
    finally:
        watcher.close()
