"""open_store(): which backend a URL or path opens."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pilotfish.config.store import MemoryStore, SqliteStore, StoreSettings, open_store
from pilotfish.config.store.factory import describe, open_store_with, sqlite_path
from pilotfish.config.store.postgres import PostgresStore
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


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_postgresql_url_opens_a_postgres_store(scheme: str, postgres_cluster: Any) -> None:
    url = postgres_cluster.new_database().replace("postgresql://", f"{scheme}://", 1)
    store = open_store_with(StoreSettings(url, keep_events=7))
    try:
        assert isinstance(store, PostgresStore)
        assert store.revision() == 0
    finally:
        store.close()


def test_unreachable_postgresql_names_the_server_without_the_password(free_port: Any) -> None:
    url = f"postgresql://pf:secret@127.0.0.1:{free_port()}/pilotfish?connect_timeout=2"
    with pytest.raises(StoreError, match="cannot open the config store") as err:
        open_store(url)
    assert "postgresql://pf@127.0.0.1:" in str(err.value)
    assert "secret" not in str(err.value)


def test_unknown_scheme() -> None:
    with pytest.raises(StoreError, match='unknown config store URL scheme "etcd"'):
        open_store("etcd://localhost:2379")


def test_unopenable_path(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="cannot open the config store"):
        open_store(str(blocker / "config.db"))


def test_describe_hides_a_password() -> None:
    assert describe("postgresql://pf:s3cret@db:5432/mesh?sslmode=require") == (
        "postgresql://pf:***@db:5432/mesh?sslmode=require"
    )
    assert describe("postgresql://pf@db/mesh") == "postgresql://pf@db/mesh"
    assert describe("/var/lib/pilotfish/config.db") == "/var/lib/pilotfish/config.db"
