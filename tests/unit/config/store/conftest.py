"""Store fixtures: every rule is checked against each backend.

The PostgreSQL run gives each store a database of its own on the session's throwaway cluster
(``tests/postgres.py``); it skips only when the PostgreSQL server binaries are missing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pilotfish.config.store import MemoryStore, SqliteStore, Store

FIXED_TIME = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)

MakeStore = Callable[..., Store]


BACKENDS = ["memory", "sqlite", "postgresql"]


@pytest.fixture(params=BACKENDS)
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeStore]:
    """Builds stores of the parametrized backend; closes them all at the end."""
    made: list[Store] = []
    counter = iter(range(1_000_000))

    def make(**kwargs: Any) -> Store:
        kwargs.setdefault("clock", lambda: FIXED_TIME)
        store: Store
        if request.param == "memory":
            store = MemoryStore(**kwargs)
        elif request.param == "sqlite":
            store = SqliteStore(tmp_path / f"config-{next(counter)}.db", **kwargs)
        else:
            from pilotfish.config.store.postgres import PostgresStore

            cluster = request.getfixturevalue("postgres_cluster")
            store = PostgresStore(cluster.new_database(), **kwargs)
        made.append(store)
        return store

    try:
        yield make
    finally:
        for store in made:
            store.close()


@pytest.fixture
def store(make_store: MakeStore) -> Store:
    return make_store()
