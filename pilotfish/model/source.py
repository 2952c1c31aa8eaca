"""The current PushContext of a control plane: built from the store and the registry.

``PushContextSource`` holds one PushContext and rebuilds it lazily, on the first read after
``invalidate()``: many store events inside one debounce window cost one rebuild, done when
the xDS server generates. The objects are listed once and then followed through the store's
events (O(changes) per rebuild). Rebuilds reuse the previous context's parsed objects, and the
registry reuses conversions of unchanged objects, so a rebuild costs O(changed objects)
plus indexing. Thread-safe: generation may run in worker threads.
"""

from __future__ import annotations

import logging
import threading
import time

from pilotfish.config.store.base import Key, Store, StoredObject
from pilotfish.errors import CompactedError
from pilotfish.model.push_context import (
    CredentialsFactory,
    JwksLookup,
    MeshSettings,
    PushContext,
)
from pilotfish.registry.registry import Registry

log = logging.getLogger(__name__)


class PushContextSource:
    def __init__(
        self,
        store: Store,
        registry: Registry,
        settings: MeshSettings | None = None,
        jwks: JwksLookup | None = None,
        credentials: CredentialsFactory | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.settings = settings or MeshSettings()
        self.jwks = jwks
        self.credentials = credentials
        self._lock = threading.Lock()
        self._current: PushContext | None = None
        self._dirty = True
        self._objects: dict[Key, StoredObject] | None = None
        self._revision = 0
        #: How many times a context was built (for tests and metrics).
        self.builds = 0

    def _read(self) -> tuple[int, list[StoredObject]]:
        """The store's revision and objects: listed once, then kept up to date from the
        store's events (O(changes) per rebuild); listed again if the events were compacted."""
        if self._objects is not None:
            try:
                events = self.store.events_since(self._revision)
            except CompactedError:
                log.info("store events compacted; listing every object again")
            else:
                for event in events:
                    if event.type == "DELETED":
                        self._objects.pop(event.object.key, None)
                    else:
                        self._objects[event.object.key] = event.object
                if events:
                    self._revision = events[-1].revision
                return self._revision, sorted(self._objects.values(), key=lambda o: o.key)
        revision = self.store.revision()
        objects = self.store.list()
        self._objects = {o.key: o for o in objects}
        self._revision = revision
        return revision, objects

    def invalidate(self) -> None:
        """Config or endpoints changed: the next ``current()`` rebuilds."""
        self._dirty = True

    def current(self) -> PushContext:
        with self._lock:
            if self._dirty or self._current is None:
                self._dirty = False
                started = time.monotonic()
                revision, objects = self._read()
                snapshot = self.registry.snapshot(objects)
                self._current = PushContext.build(
                    objects,
                    snapshot,
                    revision=revision,
                    previous=self._current,
                    settings=self.settings,
                    jwks=self.jwks,
                    credentials=self.credentials,
                )
                self.builds += 1
                log.debug(
                    "push context at revision %d built in %.1f ms",
                    revision,
                    (time.monotonic() - started) * 1000,
                )
            return self._current
