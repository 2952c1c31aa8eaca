"""Two control-plane replicas (real ``pilotfish server`` processes) on one PostgreSQL database,
sharing one CA directory (the first replica creates the mesh root and token key there)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.harness import ControlPlane, start_replica
from tests.postgres import PostgresCluster


@pytest.fixture
def replicas(
    tmp_path: Path, free_port: Callable[[], int], postgres_cluster: PostgresCluster
) -> Iterator[tuple[ControlPlane, ControlPlane]]:
    url = postgres_cluster.new_database()
    started: list[ControlPlane] = []
    try:
        for name in ("a", "b"):
            started.append(start_replica(tmp_path, name, url, free_port(), free_port()))
        yield started[0], started[1]
    finally:
        for cp in started:
            cp.kill()
