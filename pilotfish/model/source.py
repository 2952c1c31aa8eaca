"""The current PushContext of a control plane: built from the store and the registry.

``PushContextSource`` holds one PushContext and rebuilds it lazily, on the first read after
``invalidate()``: many store events inside one debounce window cost one rebuild, done when
the xDS server generates. The objects are listed once and then followed through the store's
events (O(changes) per rebuild). Rebuilds reuse the previous context's parsed objects, and the
registry reuses conversions of unchanged objects, so a rebuild costs O(changed objects)
plus indexing. Thread-safe: generation may run in worker threads.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from pilotfish.config.store.base import Key, Store, StoredObject, key_of
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
        #: Monotonic time of the oldest endpoint change the current context lacks (None: none).
        self._stale_since: float | None = None
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

    def invalidate(self, *, endpoints_only: bool = False) -> None:
        """Config or endpoints changed: the next ``current()`` rebuilds. With
        ``endpoints_only`` (a sidecar connected or left), a ``current(max_staleness)`` within
        that many seconds of the change may still return the context before it."""
        if endpoints_only:
            if self._stale_since is None:
                self._stale_since = time.monotonic()
        else:
            self._dirty = True

    def current(self, max_staleness: float = 0.0) -> PushContext:
        """The context of the store and registry as they are now, rebuilt if something
        changed since the last build. ``max_staleness``: endpoint changes (``invalidate(
        endpoints_only=True)``) younger than this many seconds do not force a rebuild; during a
        connection storm, proxies connecting within that window share one context instead of
        each rebuilding it, and the push that follows each change brings what they lack."""
        with self._lock:
            stale = self._stale_since is not None and (
                max_staleness <= 0 or time.monotonic() - self._stale_since >= max_staleness
            )
            if self._dirty or stale or self._current is None:
                self._dirty = False
                self._stale_since = None
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

    def preview(
        self, puts: Iterable[Mapping[str, Any]], deletes: Iterable[Key] = ()
    ) -> tuple[PushContext, PushContext]:
        """The current context and the one the store would give after writing ``puts`` (bodies
        as validated for the store) and deleting ``deletes``, built without storing anything:
        the hypothetical objects get the next revision, and the registry snapshot is taken by
        a detached copy (VIPs a new Service would get are not reserved)."""
        current = self.current()
        with self._lock:
            objects = dict(self._objects or {})
            revision = self._revision
        nxt = revision + 1
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        for body in puts:
            key = key_of(dict(body))
            new = copy.deepcopy(dict(body))
            meta = new.setdefault("metadata", {})
            old = objects.get(key)
            old_meta = (old.body.get("metadata") or {}) if old is not None else {}
            for field in ("uid", "creationTimestamp", "generation"):
                if field in old_meta:
                    meta[field] = old_meta[field]
            meta.setdefault("creationTimestamp", now)
            meta["resourceVersion"] = str(nxt)
            objects[key] = StoredObject(key, new, nxt)
        for key in deletes:
            objects.pop(key, None)
        ordered = sorted(objects.values(), key=lambda o: o.key)
        snapshot = self.registry.detached().snapshot(ordered)
        after = PushContext.build(
            ordered,
            snapshot,
            revision=nxt,
            previous=current,
            settings=self.settings,
            jwks=self.jwks,
            credentials=self.credentials,
        )
        return current, after
