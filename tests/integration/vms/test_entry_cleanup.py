"""Auto-registered WorkloadEntries whose control-plane replica is gone (real control planes
and Envoys): the replica that registered an agent is killed with SIGKILL, so it never removes
the entry when the agent leaves. The entry must not stay for good (its endpoint would answer
nobody): the leader removes it once the cleanup grace has passed without the agent coming
back, and keeps the entries of agents that reconnected to a live replica.

The grace is cut to 2 s (``--workload-entry-cleanup-grace``); no time is asserted, waits are
bounded and generous."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import ControlPlane, Mesh, eventually, start_replica
from tests.postgres import PostgresCluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

GRACE = ("--workload-entry-cleanup-grace", "2s")

CONFIG = """
apiVersion: v1
kind: Service
metadata: {name: vmapp}
spec:
  selector: {app: vmapp}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: vmapp}
spec:
  metadata:
    labels: {app: vmapp}
  template:
    labels: {version: v1}
    serviceAccount: vmapp
"""


def entries(cp: ControlPlane) -> dict[str, dict[str, Any]]:
    res = cp.cli("get", "workloadentries", "-o", "json", check=True)
    data = json.loads(res.stdout)
    items = data.get("items", []) if isinstance(data, dict) else data
    return {str(i["metadata"]["name"]): i for i in items}


def controller(cp: ControlPlane, name: str) -> str:
    entry = entries(cp).get(name) or {}
    return str((entry.get("metadata") or {}).get("annotations", {}).get(
        "istio.io/workloadController", ""))  # fmt: skip


def register(mesh: Mesh) -> str:
    """A `pilotfish proxy --workload-group vmapp` agent; its entry's name once stored."""
    sc = mesh.add(
        "ignored", {"app": "vmapp", "version": "v1"},
        workload_group="vmapp", service_account="vmapp",
    )  # fmt: skip
    eventually(lambda: sc.name in entries(mesh.live()), 30, f"WorkloadEntry {sc.name}")
    return sc.name


def test_entries_of_a_killed_replica_go_unless_their_agent_reconnected(
    tmp_path: Path, free_port: Callable[[], int], postgres_cluster: PostgresCluster
) -> None:
    url = postgres_cluster.new_database()
    started: list[ControlPlane] = []
    meshes: list[Mesh] = []
    try:
        for name in ("a", "b"):
            started.append(start_replica(tmp_path, name, url, free_port(), free_port(), GRACE))
        a, b = started
        only_a = Mesh(a, tmp_path / "only-a", free_port)  # an agent that knows replica a only
        both = Mesh(a, tmp_path / "both", free_port, replicas=[b])
        meshes += [only_a, both]
        for m in meshes:
            m.tmp.mkdir(parents=True, exist_ok=True)
        only_a.apply(CONFIG)
        lone = register(only_a)
        assert controller(b, lone) == controller(a, lone) != ""
        a_name = controller(a, lone)
        mover = register(both)

        a.kill(signal.SIGKILL)  # it never hears either agent leave
        only_a.stop()  # the agent that knew a leaves while a is gone

        # The agent that knows b too is registered through b (reconnected there, or there
        # from the start); the lone agent's entry is removed by b.
        eventually(lambda: controller(b, mover) not in ("", a_name), 60, f"{mover} through b")
        eventually(lambda: lone not in entries(b), 90, f"WorkloadEntry {lone} removed by b")
        assert mover in entries(b), entries(b).keys()
        assert f"removed WorkloadEntry default/{lone}: the replica" in b.log.read_text()
    finally:
        for m in meshes:
            m.stop()
        for cp in started:
            cp.kill(signal.SIGKILL)


def test_a_restarted_control_plane_removes_entries_whose_agent_left_meanwhile(
    control_plane_factory: Callable[..., ControlPlane], tmp_path: Path, free_port: Callable[[], int]
) -> None:
    first = control_plane_factory(*GRACE)
    mesh = Mesh(first, tmp_path, free_port)
    try:
        mesh.apply(CONFIG)
        name = register(mesh)
        first.kill(signal.SIGKILL)
        mesh.stop()  # the agent leaves while no control plane runs
        again = control_plane_factory(*GRACE)  # the same data directory and SQLite store
        eventually(lambda: name not in entries(again), 60, f"WorkloadEntry {name} removed")
        assert f"removed WorkloadEntry default/{name}: the replica" in again.log.read_text()
    finally:
        mesh.stop()
