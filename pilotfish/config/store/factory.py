"""Opening a config store from a URL or a path: the one place that maps names to backends.

``sqlite:///abs/path/config.db``, ``sqlite://relative/config.db`` or a plain path open a
SqliteStore (a directory, or a path ending in ``/``, means ``<dir>/config.db``);
``memory://`` opens a MemoryStore; ``postgresql://user@host:port/database`` (or
``postgres://``, with libpq's query parameters such as ``?sslmode=require``) opens a
PostgresStore, the store several control-plane replicas share. A password is best kept out of
the URL, in ``~/.pgpass`` or ``PGPASSWORD``, as for any libpq client.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from pilotfish.config.store.base import Store
from pilotfish.config.store.memory import MemoryStore
from pilotfish.config.store.sqlite import DEFAULT_FILENAME, DEFAULT_KEEP_EVENTS, SqliteStore
from pilotfish.errors import StoreError

POSTGRES_SCHEMES = ("postgresql", "postgres")


@dataclass(frozen=True, slots=True)
class StoreSettings:
    """How to open the store: ``url`` as above, and how many events the log keeps."""

    url: str
    keep_events: int = DEFAULT_KEEP_EVENTS


def open_store(
    url_or_path: str | os.PathLike[str], *, keep_events: int = DEFAULT_KEEP_EVENTS
) -> Store:
    """The store named by ``url_or_path`` (see the module docstring). StoreError if unknown."""
    text = os.fspath(url_or_path)
    scheme = url_scheme(text)
    if scheme == "memory":
        return MemoryStore(keep_events=keep_events)
    if scheme == "sqlite":
        return SqliteStore(sqlite_path(text), keep_events=keep_events)
    if scheme in POSTGRES_SCHEMES:
        return _postgres_store(text, keep_events)
    if scheme:
        raise StoreError(
            f'unknown config store URL scheme "{scheme}" in {text!r}'
            " (use sqlite:///path/config.db, a path, postgresql://host/database or memory://)"
        )
    if not text:
        raise StoreError("the config store path is empty")
    return SqliteStore(_database_file(Path(text), text.endswith(os.sep)), keep_events=keep_events)


def url_scheme(url_or_path: str | os.PathLike[str]) -> str:
    """The scheme of a store URL, lower-case; "" for a plain path."""
    text = os.fspath(url_or_path)
    return urlsplit(text).scheme.lower() if "://" in text else ""


def is_postgres(url_or_path: str | os.PathLike[str]) -> bool:
    """Whether ``url_or_path`` names a PostgreSQL database (the store replicas share)."""
    return url_scheme(url_or_path) in POSTGRES_SCHEMES


def describe(url_or_path: str | os.PathLike[str]) -> str:
    """``url_or_path`` for logs and messages: a URL's password is replaced by ``***``."""
    text = os.fspath(url_or_path)
    if "://" not in text:
        return text
    parts = urlsplit(text)
    if parts.password is None:
        return text
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return parts._replace(netloc=f"{user}:***@{host}").geturl()


def open_store_with(settings: StoreSettings) -> Store:
    return open_store(settings.url, keep_events=settings.keep_events)


def sqlite_path(url: str) -> Path:
    """The file a ``sqlite://`` URL names (``sqlite:///a/b.db`` → ``/a/b.db``)."""
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        raise StoreError(f"config store URL {url!r}: query parameters are not supported")
    raw = unquote(parts.netloc + parts.path)
    if not raw:
        raise StoreError(f"config store URL {url!r} names no file")
    return _database_file(Path(raw), raw.endswith("/"))


def _database_file(path: Path, is_dir_hint: bool) -> Path:
    return path / DEFAULT_FILENAME if is_dir_hint or path.is_dir() else path


def _postgres_store(url: str, keep_events: int) -> Store:
    try:
        from pilotfish.config.store.postgres import PostgresStore
    except ImportError as exc:
        raise StoreError(
            f"the PostgreSQL store needs the psycopg package ({exc}):"
            " install Pilotfish with its postgres extra, pip install 'pilotfish[postgres]'"
        ) from None
    return PostgresStore(url, keep_events=keep_events)
