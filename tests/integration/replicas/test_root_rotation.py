"""A root rotation taken through one replica reaches the agents of the other (R5 with two
replicas on PostgreSQL sharing a CA directory): a client and a backend sidecar (mutual TLS)
connected to replica B only, steady requests between them, and `pilotfish ca rotate-root`
run step by step against replica A. B follows each step from the shared CA directory: its
agents trust the added root, are re-issued under it once activated, and trust it alone once
the old one is retired. Not one request fails. No time is asserted; waits are bounded."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import ControlPlane, Mesh, eventually
from tests.integration.replicas.test_failover import CONFIG, Load, workload_entry

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def ca_status(cp: ControlPlane) -> dict[str, Any]:
    status: dict[str, Any] = json.loads(cp.cli("ca", "status", "-o", "json", check=True).stdout)
    return status


def workloads_on(cp: ControlPlane, check: Callable[[dict[str, Any]], bool]) -> bool:
    found = [w for w in ca_status(cp)["workloads"] if w["connected"] and w["watching"]]
    return len(found) == 2 and all(check(w) for w in found)


def test_a_rotation_through_one_replica_reaches_the_agents_of_the_other(
    replicas: tuple[ControlPlane, ControlPlane], tmp_path: Path, free_port: Callable[[], int]
) -> None:
    a, b = replicas
    mesh = Mesh(b, tmp_path, free_port)  # both sidecars know replica b only
    try:
        mesh.apply(CONFIG)
        backend = mesh.add(
            "reviews-v1", {"app": "reviews", "version": "v1"},
            service_account="bookinfo-reviews", mtls=True,
        )  # fmt: skip
        mesh.apply(workload_entry(backend))
        client = mesh.add(
            "productpage", {"app": "productpage"}, app_port=None,
            service_account="bookinfo-productpage", mtls=True,
        )  # fmt: skip
        old = ca_status(a)["signingRoot"]
        assert ca_status(b)["signingRoot"] == old
        eventually(lambda: workloads_on(b, lambda w: w["signedBy"] == old), 30, "b's agents")

        with Load(client) as load:
            eventually(lambda: load.ok >= 20, 30, "requests flowing")

            a.cli("ca", "rotate-root", "--step", "add", check=True)
            new = next(r["fingerprint"] for r in ca_status(a)["roots"] if r["role"] == "added")
            eventually(
                lambda: workloads_on(b, lambda w: sorted(w["trusts"]) == sorted([old, new])),
                30,
                "b's agents trusting both roots",
            )
            a.cli("ca", "rotate-root", "--step", "activate", check=True)
            eventually(lambda: ca_status(b)["signingRoot"] == new, 30, "b signing the new root")
            eventually(
                lambda: workloads_on(b, lambda w: w["signedBy"] == new),
                30,
                "b's agents re-issued under the new root",
            )
            a.cli("ca", "rotate-root", "--step", "retire", check=True)
            eventually(
                lambda: workloads_on(b, lambda w: w["trusts"] == [new]),
                30,
                "b's agents trusting the new root alone",
            )
            served = load.ok
            eventually(lambda: load.ok >= served + 20, 30, "requests after the rotation")

        assert load.failures == [], f"{len(load.failures)} failed: {load.failures[:5]}"
        assert [r["fingerprint"] for r in ca_status(b)["roots"]] == [new]
    finally:
        mesh.stop()
