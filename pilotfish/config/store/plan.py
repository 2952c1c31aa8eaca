"""Planning a commit: the store rules every backend shares, as pure functions.

``plan_commit`` turns a list of operations plus a way to read the current objects into the
events the commit produces (one per effective write, consecutive revisions), or raises the
StoreError of the first operation whose precondition fails. Backends only read objects,
call this, and write the events' results in one transaction; so the memory and SQLite
stores behave the same by construction.

Rules kept here: server-filled metadata (``resourceVersion``, ``uid``, ``creationTimestamp``,
``generation``), no-op puts, optimistic concurrency, create-only puts, deletes of missing
objects, and the user-facing wording of those errors (kubectl's).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from pilotfish.api.kinds import by_kind
from pilotfish.config.store.addresses import Holders, check_addresses
from pilotfish.config.store.base import (
    Delete,
    Event,
    Key,
    Operation,
    Put,
    StoredObject,
)
from pilotfish.errors import (
    AlreadyExistsError,
    CompactedError,
    ConflictError,
    NotFoundError,
    StoreError,
    UnknownKindError,
)

#: Metadata fields the store owns; a caller's values are replaced.
SERVER_METADATA = ("resourceVersion", "uid", "creationTimestamp", "generation")
#: Fields ignored when deciding whether a put changes anything.
_IGNORED_METADATA = (*SERVER_METADATA, "managedFields")

Lookup = Callable[[Key], StoredObject | None]
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    """``2024-05-01T12:00:00Z``: Kubernetes' timestamp form (seconds, UTC)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def plural(kind: str) -> str:
    """The resource name kubectl uses in messages (``virtualservices``)."""
    try:
        return by_kind(kind).plural
    except UnknownKindError:
        return kind.lower() + "s"


def not_found(key: Key) -> NotFoundError:
    return NotFoundError(f'{plural(key.kind)} "{key.name}" not found')


def already_exists(key: Key) -> AlreadyExistsError:
    return AlreadyExistsError(f'{plural(key.kind)} "{key.name}" already exists')


def conflict(key: Key) -> ConflictError:
    return ConflictError(
        f'Operation cannot be fulfilled on {plural(key.kind)} "{key.name}": the object has '
        "been modified; please apply your changes to the latest version and try again"
    )


def check_since(revision: int, current: int, compacted: int) -> None:
    """Raise unless the events after ``revision`` are all still kept.

    ``compacted`` is the highest revision whose event was dropped (0 if none).
    """
    if revision < 0:
        raise ValueError(f"revision must be >= 0, got {revision}")
    if revision < compacted:
        raise CompactedError(
            f"too old resource version: {revision} (events up to {compacted} were compacted;"
            " list again and watch from the listed revision)"
        )
    if revision > current:
        raise CompactedError(
            f"resource version {revision} is ahead of the store (at {current});"
            " list again and watch from the listed revision"
        )


def key_for(body: dict[str, Any]) -> Key:
    """The key of ``body``, or a StoreError saying which identifying field is missing."""
    if not isinstance(body, dict):
        raise StoreError(f"cannot store {type(body).__name__}: an object must be a mapping")
    kind = body.get("kind")
    meta = body.get("metadata")
    if not isinstance(kind, str) or not kind:
        raise StoreError("cannot store an object without kind")
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not meta["name"]:
        raise StoreError(f"cannot store {kind} without metadata.name")
    namespace = meta.get("namespace") or ""
    if not isinstance(namespace, str):
        raise StoreError(f"{kind} {meta['name']}: metadata.namespace must be a string")
    return Key(kind, namespace, meta["name"])


def copy_json(body: dict[str, Any], key: Key) -> dict[str, Any]:
    """A deep copy of ``body`` through JSON, so the store keeps only JSON data."""
    try:
        copied: dict[str, Any] = json.loads(json.dumps(body, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise StoreError(f"{key}: the object is not JSON data: {exc}") from None
    return copied


def comparable(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` without the fields the store fills (shallow where untouched)."""
    out = dict(body)
    meta = dict(out.get("metadata") or {})
    for f in _IGNORED_METADATA:
        meta.pop(f, None)
    out["metadata"] = meta
    return out


def _content(body: dict[str, Any]) -> tuple[Any, Any]:
    return body.get("spec"), body.get("data")


def plan_commit(
    ops: Sequence[Operation],
    lookup: Lookup,
    revision: int,
    *,
    clock: Clock = utc_now,
    new_uid: Callable[[], str] = lambda: str(uuid.uuid4()),
    holders: Holders | None = None,
) -> list[Event]:
    """The events of applying ``ops`` in order to a store at ``revision``.

    ``lookup`` reads the committed state; later operations see earlier ones of the same
    commit. Raises the StoreError of the first failing operation (nothing is applied then).
    Bodies in the returned events are fresh copies the caller may keep. ``holders``: the
    stored objects that may hold some addresses, for the one-VIP-one-hostname rule
    (``addresses.check_addresses``), read under the backend's write lock.
    """
    pending: dict[Key, StoredObject | None] = {}
    events: list[Event] = []

    def current(key: Key) -> StoredObject | None:
        if key in pending:
            return pending[key]
        return lookup(key)

    for op in ops:
        if isinstance(op, Put):
            key = key_for(op.body)
            old = current(key)
            event = _plan_put(op, key, old, revision + len(events) + 1, clock, new_uid)
        elif isinstance(op, Delete):
            key = op.key
            old = current(key)
            event = _plan_delete(op, old, revision + len(events) + 1)
        else:  # pragma: no cover - guarded by the type
            raise TypeError(f"not a store operation: {op!r}")
        if event is None:
            continue
        events.append(event)
        pending[key] = None if event.type == "DELETED" else event.object
    if holders is not None:
        check_addresses(events, lookup, holders)
    return events


def _plan_put(
    op: Put,
    key: Key,
    old: StoredObject | None,
    revision: int,
    clock: Clock,
    new_uid: Callable[[], str],
) -> Event | None:
    if old is None:
        if op.expected_revision is not None:
            raise not_found(key)
    else:
        if op.create_only:
            raise already_exists(key)
        if op.expected_revision is not None and op.expected_revision != old.revision:
            raise conflict(key)
    body = copy_json(op.body, key)
    if old is not None and comparable(body) == comparable(old.body):
        return None
    meta: dict[str, Any] = body["metadata"]
    for f in SERVER_METADATA:
        meta.pop(f, None)
    if old is None:
        meta["uid"] = new_uid()
        meta["creationTimestamp"] = rfc3339(clock())
        meta["generation"] = 1
    else:
        old_meta = old.body.get("metadata") or {}
        meta["uid"] = old_meta.get("uid") or new_uid()
        meta["creationTimestamp"] = old_meta.get("creationTimestamp") or rfc3339(clock())
        generation = int(old_meta.get("generation") or 1)
        if _content(body) != _content(old.body):
            generation += 1
        meta["generation"] = generation
    meta["resourceVersion"] = str(revision)
    stored = StoredObject(key, body, revision)
    return Event("ADDED" if old is None else "MODIFIED", revision, stored)


def _plan_delete(op: Delete, old: StoredObject | None, revision: int) -> Event:
    if old is None:
        raise not_found(op.key)
    if op.expected_revision is not None and op.expected_revision != old.revision:
        raise conflict(op.key)
    body = copy_json(old.body, op.key)
    body.setdefault("metadata", {})["resourceVersion"] = str(revision)
    return Event("DELETED", revision, StoredObject(op.key, body, revision))
