"""The config store contract: what every backend (memory, SQLite, PostgreSQL) promises.

Objects are kept as plain JSON-able dicts (the full Kubernetes-shaped body: ``apiVersion``,
``kind``, ``metadata``, ``spec``/``data``...), keyed by ``(kind, namespace, name)``;
cluster-scoped kinds use namespace ``""``. Validation happens before the store; the store
only keeps, orders and reports.

Revisions: the store keeps one global counter. Every write operation (one put or one
delete) gets the next revision, so the operations of one transaction get consecutive
revisions. ``metadata.resourceVersion`` of a stored object is ``str(revision)`` of its last
write. ``events_since(r)`` returns every event with revision > r, ordered, with no gaps, so
a reader that remembers the last revision it saw catches up exactly.

A transaction (``commit``) is all or nothing: if any operation fails its precondition, no
operation of it is applied, and the error names the failing resource.
"""

from __future__ import annotations

import builtins
import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pilotfish.api.objects import ResourceKey
from pilotfish.config.store.access import ApiToken, AuditEntry

EventType = Literal["ADDED", "MODIFIED", "DELETED"]


#: The store's name for a resource key: ``(kind, namespace, name)``.
Key = ResourceKey


@dataclass(frozen=True, slots=True)
class StoredObject:
    """A stored object: its key, its full body and the revision of its last write."""

    key: Key
    body: dict[str, Any]
    revision: int

    @property
    def kind(self) -> str:
        return self.key.kind

    @property
    def namespace(self) -> str:
        return self.key.namespace

    @property
    def name(self) -> str:
        return self.key.name


@dataclass(frozen=True, slots=True)
class Event:
    """One change. For DELETED, ``object.body`` is the last body before deletion (with
    ``metadata.resourceVersion`` set to the delete's revision, as Kubernetes watches report
    it) and ``object.revision`` is the revision of the delete."""

    type: EventType
    revision: int
    object: StoredObject


@dataclass(frozen=True, slots=True)
class Put:
    """Create or replace ``body``.

    ``expected_revision``: when set, the object must currently exist (NotFoundError
    otherwise) at exactly that revision (optimistic concurrency; ConflictError otherwise).
    ``create_only``: the object must not exist (AlreadyExistsError otherwise). The store
    fills ``metadata.resourceVersion``, ``metadata.uid`` (kept across updates),
    ``metadata.creationTimestamp`` (kept) and ``metadata.generation`` (1, then +1 when
    ``spec`` or ``data`` changes); values the caller puts there are ignored.
    A put whose body equals the stored one (ignoring those fields) is a no-op: no revision,
    no event. Preconditions are checked first, so a stale ``expected_revision`` conflicts
    even when the body is unchanged.
    """

    body: dict[str, Any]
    expected_revision: int | None = None
    create_only: bool = False


@dataclass(frozen=True, slots=True)
class Delete:
    """Delete the object at ``key`` (NotFoundError if absent, ConflictError if
    ``expected_revision`` is set and differs)."""

    key: Key
    expected_revision: int | None = None


Operation = Put | Delete


@dataclass(frozen=True, slots=True)
class CommitResult:
    revision: int  # store revision after the commit
    events: list[Event] = field(default_factory=list)


class Store(Protocol):
    """A config store. Implementations are thread-safe; calls are synchronous and quick."""

    def get(self, key: Key) -> StoredObject | None: ...

    def list(self, kind: str | None = None, namespace: str | None = None) -> list[StoredObject]:
        """Objects ordered by (kind, namespace, name); ``None`` means all."""
        ...

    def commit(self, ops: Sequence[Operation], audit: AuditEntry | None = None) -> CommitResult:
        """Apply all operations in one transaction, or none (raises a StoreError).

        ``audit``: when the commit writes something, this entry is appended to the audit log
        in the same transaction, stamped with the time and the commit's revision."""
        ...

    def audit_log(self, after: int = 0, limit: int | None = None) -> builtins.list[AuditEntry]:
        """Audit entries with ``id > after``, oldest first, at most ``limit`` (the newest)."""
        ...

    def record_audit(self, audit: AuditEntry) -> None:
        """Append ``audit`` for a change kept outside the config (the mesh CA's root
        rotation), stamped with the time and the revision in force."""
        ...

    def add_api_token(self, token: ApiToken, audit: AuditEntry) -> None:
        """Store a new API token (AlreadyExistsError if its name is taken), audited."""
        ...

    def remove_api_token(self, name: str, audit: AuditEntry) -> ApiToken:
        """Delete the API token ``name`` (NotFoundError if absent), audited."""
        ...

    def api_tokens(self) -> builtins.list[ApiToken]:
        """Every API token, by name."""
        ...

    def api_token(self, digest: str) -> ApiToken | None:
        """The API token whose secret has this digest."""
        ...

    def revision(self) -> int:
        """The revision of the last committed write (0 for an empty store)."""
        ...

    def events_since(self, revision: int, limit: int | None = None) -> builtins.list[Event]:
        """Events with revision > ``revision`` in order, at most ``limit`` of them.

        CompactedError if some were dropped (or if ``revision`` is ahead of the store, which
        means the reader saw another store: it must list again either way)."""
        ...

    def subscribe(self, callback: Callable[[int], None]) -> Callable[[], None]:
        """Call ``callback(revision)`` after each commit that wrote something (from the
        committing thread, or from the backend's listener for shared stores), never while
        holding the store's lock, so the callback may read the store. Callbacks of concurrent
        commits may run concurrently and out of order: treat ``revision`` as a hint and read
        ``events_since``. Returns an unsubscribe function."""
        ...

    def close(self) -> None: ...


def key_of(body: dict[str, Any]) -> Key:
    meta = body.get("metadata") or {}
    return Key(str(body["kind"]), str(meta.get("namespace") or ""), str(meta["name"]))


def strip_server_fields(body: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``body`` without the fields the store fills, for no-op comparison."""
    out = copy.deepcopy(body)
    meta = out.get("metadata") or {}
    for f in ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields"):
        meta.pop(f, None)
    out.pop("status", None)
    return out
