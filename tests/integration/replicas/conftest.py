"""Two control-plane replicas (real ``pilotfish server`` processes) on one PostgreSQL database,
sharing one CA directory (the first replica creates the mesh root and token key there)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.harness import ControlPlane, start_control_plane
from tests.postgres import PostgresCluster


@pytest.fixture
def replicas(
    tmp_path: Path, free_port: Callable[[], int], postgres_cluster: PostgresCluster
) -> Iterator[tuple[ControlPlane, ControlPlane]]:
    url = postgres_cluster.new_database()
    shared_ca = tmp_path / "shared-ca"
    started: list[ControlPlane] = []
    try:
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            started.append(
                start_control_plane(
                    tmp_path / name / "data",
                    tmp_path / name / "config",
                    free_port(),
                    free_port(),
                    ("--store", url, "--ca-dir", str(shared_ca)),
                )
            )
        yield started[0], started[1]
    finally:
        for cp in started:
            cp.kill()
