"""MemoryStore: the config store kept in a dict, for tests and throw-away runs.

Same rules as every backend (see ``base`` and ``plan``): one global revision, an event log
of the last ``keep_events`` events, all-or-nothing commits, thread-safe. Nothing survives
the process.
"""

from __future__ import annotations

import builtins
import copy
import itertools
import threading
from collections import deque
from collections.abc import Callable, Sequence

from pilotfish.config.store.access import (
    DEFAULT_KEEP_AUDIT,
    ApiToken,
    AuditEntry,
    audit_time,
    token_exists,
    token_not_found,
)
from pilotfish.config.store.addresses import HOLDER_KINDS
from pilotfish.config.store.base import CommitResult, Event, Key, Operation, StoredObject
from pilotfish.config.store.notify import Subscribers
from pilotfish.config.store.plan import Clock, check_since, plan_commit, utc_now
from pilotfish.errors import StoreError

DEFAULT_KEEP_EVENTS = 10_000


class MemoryStore:
    """An in-process Store. ``keep_events``: how many recent events ``events_since`` serves."""

    def __init__(self, *, keep_events: int = DEFAULT_KEEP_EVENTS, clock: Clock = utc_now) -> None:
        if keep_events < 1:
            raise ValueError(f"keep_events must be >= 1, got {keep_events}")
        self._keep = keep_events
        self._clock = clock
        self._lock = threading.Lock()
        self._objects: dict[Key, StoredObject] = {}
        self._events: deque[Event] = deque()
        self._revision = 0
        self._compacted = 0
        self._closed = False
        self._subscribers = Subscribers()
        self._audit: deque[AuditEntry] = deque(maxlen=DEFAULT_KEEP_AUDIT)
        self._audit_id = 0
        self._tokens: dict[str, ApiToken] = {}

    def get(self, key: Key) -> StoredObject | None:
        with self._lock:
            self._check_open()
            found = self._objects.get(key)
        return _copy(found) if found is not None else None

    def list(self, kind: str | None = None, namespace: str | None = None) -> list[StoredObject]:
        with self._lock:
            self._check_open()
            found = [
                o
                for o in self._objects.values()
                if (kind is None or o.kind == kind)
                and (namespace is None or o.namespace == namespace)
            ]
        found.sort(key=lambda o: (o.kind, o.namespace, o.name))
        return [_copy(o) for o in found]

    def _holders(self, addresses: set[str]) -> builtins.list[StoredObject]:
        return [o for o in self._objects.values() if o.kind in HOLDER_KINDS]

    def commit(self, ops: Sequence[Operation], audit: AuditEntry | None = None) -> CommitResult:
        with self._lock:
            self._check_open()
            events = plan_commit(
                ops, self._objects.get, self._revision, clock=self._clock, holders=self._holders
            )
            for event in events:
                if event.type == "DELETED":
                    del self._objects[event.object.key]
                else:
                    self._objects[event.object.key] = event.object
                self._events.append(event)
            if events:
                self._revision = events[-1].revision
                while len(self._events) > self._keep:
                    self._compacted = self._events.popleft().revision
                if audit is not None:
                    self._append_audit(audit)
            revision = self._revision
        if events:
            self._subscribers.notify(revision)
        return CommitResult(revision, [_copy_event(e) for e in events])

    def revision(self) -> int:
        with self._lock:
            self._check_open()
            return self._revision

    def events_since(self, revision: int, limit: int | None = None) -> builtins.list[Event]:
        with self._lock:
            self._check_open()
            check_since(revision, self._revision, self._compacted)
            # Events hold consecutive revisions, so the start is found by arithmetic.
            start = revision - self._compacted
            stop = len(self._events) if limit is None else min(len(self._events), start + limit)
            found = list(itertools.islice(self._events, start, stop))
        return [_copy_event(e) for e in found]

    def audit_log(self, after: int = 0, limit: int | None = None) -> builtins.list[AuditEntry]:
        with self._lock:
            self._check_open()
            found = [e for e in self._audit if e.id > after]
        return found if limit is None else found[max(len(found) - limit, 0) :]

    def add_api_token(self, token: ApiToken, audit: AuditEntry) -> None:
        with self._lock:
            self._check_open()
            if token.name in self._tokens:
                raise token_exists(token.name)
            self._tokens[token.name] = token
            self._append_audit(audit)

    def record_audit(self, audit: AuditEntry) -> None:
        with self._lock:
            self._check_open()
            self._append_audit(audit)

    def remove_api_token(self, name: str, audit: AuditEntry) -> ApiToken:
        with self._lock:
            self._check_open()
            token = self._tokens.pop(name, None)
            if token is None:
                raise token_not_found(name)
            self._append_audit(audit)
        return token

    def api_tokens(self) -> builtins.list[ApiToken]:
        with self._lock:
            self._check_open()
            return sorted(self._tokens.values(), key=lambda t: t.name)

    def api_token(self, digest: str) -> ApiToken | None:
        with self._lock:
            self._check_open()
            return next((t for t in self._tokens.values() if t.digest == digest), None)

    def _append_audit(self, audit: AuditEntry) -> None:
        self._audit_id += 1
        entry = audit.stamped(audit_time(self._clock()), self._revision)
        self._audit.append(AuditEntry.from_json(self._audit_id, entry.to_json()))

    def subscribe(self, callback: Callable[[int], None]) -> Callable[[], None]:
        return self._subscribers.add(callback)

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._subscribers.clear()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("the config store is closed")


def _copy(obj: StoredObject) -> StoredObject:
    return StoredObject(obj.key, copy.deepcopy(obj.body), obj.revision)


def _copy_event(event: Event) -> Event:
    return Event(event.type, event.revision, _copy(event.object))
