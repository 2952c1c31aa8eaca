"""open_store(): which backend a URL or path opens."""

from __future__ import annotations

from pathlib import Path

import pytest

from pilotfish.config.store import MemoryStore, SqliteStore, StoreSettings, open_store
from pilotfish.config.store.factory import open_store_with, sqlite_path
from pilotfish.errors import StoreError


def test_memory_url() -> None:
    store = open_store("memory://")
    try:
        assert isinstance(store, MemoryStore)
    finally:
        store.close()


@pytest.mark.parametrize("form", ["url", "path", "dir", "dir-slash"])
def test_sqlite_forms(tmp_path: Path, form: str) -> None:
    target = tmp_path / "config.db"
    text = {
        "url": f"sqlite://{target}",
        "path": str(target),
        "dir": str(tmp_path),
        "dir-slash": str(tmp_path / "data") + "/",
    }[form]
    if form == "dir-slash":
        target = tmp_path / "data" / "config.db"
    store = open_store(text)
    try:
        assert isinstance(store, SqliteStore)
        assert store.path == target
        assert target.exists()
    finally:
        store.close()


def test_sqlite_url_paths() -> None:
    assert sqlite_path("sqlite:///var/lib/pilotfish/config.db") == Path(
        "/var/lib/pilotfish/config.db"
    )
    assert sqlite_path("sqlite://data/config.db") == Path("data/config.db")
    with pytest.raises(StoreError, match="names no file"):
        sqlite_path("sqlite://")


def test_settings_pass_keep_events(tmp_path: Path) -> None:
    store = open_store_with(StoreSettings(str(tmp_path / "c.db"), keep_events=7))
    try:
        assert isinstance(store, SqliteStore)
    finally:
        store.close()


@pytest.mark.parametrize("url", ["postgresql://pf@db/pilotfish", "postgres://db/pf"])
def test_postgresql_is_not_in_this_build(url: str) -> None:
    with pytest.raises(StoreError, match="PostgreSQL store is not available in this build yet"):
        open_store(url)


def test_unknown_scheme() -> None:
    with pytest.raises(StoreError, match='unknown config store URL scheme "etcd"'):
        open_store("etcd://localhost:2379")


def test_unopenable_path(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="cannot open the config store"):
        open_store(str(blocker / "config.db"))
