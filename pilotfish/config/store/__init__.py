"""The config store: where applied resources live, ordered by one global revision.

Backends: ``SqliteStore`` (the embedded default), ``MemoryStore`` (tests) and
``postgres.PostgresStore`` (shared by control-plane replicas; imported on demand, since psycopg
is an optional dependency).
Consumers read with ``get``/``list``, write with ``commit([Put(...), Delete(...)])`` and
follow changes with ``watch(store, revision)``; ``open_store(url)`` picks the backend.
"""

from pilotfish.config.store.base import (
    CommitResult,
    Delete,
    Event,
    EventType,
    Key,
    Operation,
    Put,
    Store,
    StoredObject,
    key_of,
    strip_server_fields,
)
from pilotfish.config.store.factory import StoreSettings, open_store, open_store_with
from pilotfish.config.store.memory import MemoryStore
from pilotfish.config.store.sqlite import SqliteStore
from pilotfish.config.store.watch import Watcher, watch

__all__ = [
    "CommitResult",
    "Delete",
    "Event",
    "EventType",
    "Key",
    "MemoryStore",
    "Operation",
    "Put",
    "SqliteStore",
    "Store",
    "StoreSettings",
    "StoredObject",
    "Watcher",
    "key_of",
    "open_store",
    "open_store_with",
    "strip_server_fields",
    "watch",
]
