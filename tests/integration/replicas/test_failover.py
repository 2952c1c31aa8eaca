"""Losing a control-plane replica under load (R3 of issue 13's table).

Two replicas on one PostgreSQL; a client sidecar and a backend sidecar both know both replicas
(``--discovery-address`` A, B), with mutual TLS. Requests run steadily from the client
through both Envoys while the replica the client's Envoy is connected to is killed with
SIGKILL. Then:

* not one request failed, before, during or after the kill;
* both Envoys are connected to the surviving replica (Envoy reconnected by itself);
* a VirtualService applied through the survivor reaches the client's Envoy;
* a new sidecar that lists the dead replica first still gets its certificate (the agent's CA
  client skips the dead replica) and serves traffic.

No timing is asserted; waits are bounded.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path

import httpx
import pytest

from tests.integration.harness import ControlPlane, Mesh, Sidecar, eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

CONFIG = """
apiVersion: v1
kind: Service
metadata: {name: reviews}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
"""


def workload_entry(sc: Sidecar) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: {sc.name}}}
spec:
  address: {sc.ip}
  ports: {{http: {sc.inbound_port}}}
  labels: {{app: reviews, version: v1}}
  serviceAccount: bookinfo-reviews
"""


def header_route(value: str) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews}}
spec:
  hosts: [reviews]
  http:
  - headers:
      response:
        set: {{x-served-config: {value}}}
    route:
    - destination: {{host: reviews}}
"""


def served(client: Sidecar, value: str) -> bool:
    """The client's sidecar reaches reviews under the VirtualService ``header_route(value)``."""
    r = client.request("reviews:9080", "/r")
    return r.status_code == 200 and r.headers.get("x-served-config") == value


class Load:
    """Steady requests through the client's sidecar, in a thread, ``pause`` seconds apart;
    every outcome counted (bench/replicas.py times the same scenario with it)."""

    def __init__(self, client: Sidecar, pause: float = 0.01) -> None:
        self.client = client
        self.pause = pause
        self.ok = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=10) as http:
            url = f"http://127.0.0.1:{self.client.outbound_port}/load"
            while not self._stop.is_set():
                try:
                    r = http.get(url, headers={"Host": "reviews:9080"})
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                else:
                    if r.status_code == 200:
                        self.ok += 1
                    else:
                        self.failures.append(f"{r.status_code} {r.text[:200]}")
                self._stop.wait(self.pause)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)


def connected_to(cp: ControlPlane, name: str) -> bool:
    res = cp.cli("proxy-status")
    return res.returncode == 0 and any(line.startswith(name) for line in res.stdout.splitlines())


def test_killing_the_replica_in_use_fails_no_request(
    replicas: tuple[ControlPlane, ControlPlane], tmp_path: Path, free_port: Callable[[], int]
) -> None:
    a, b = replicas
    mesh = Mesh(a, tmp_path, free_port, replicas=[b])
    try:
        mesh.apply(CONFIG)
        backend = mesh.add(
            "reviews-v1", {"app": "reviews", "version": "v1"},
            service_account="bookinfo-reviews", mtls=True,
        )  # fmt: skip
        mesh.apply(workload_entry(backend))
        mesh.apply(header_route("before"))
        client = mesh.add(
            "productpage", {"app": "productpage"}, app_port=None,
            service_account="bookinfo-productpage", mtls=True,
        )  # fmt: skip

        eventually(lambda: served(client, "before"), 30, "reviews through the client's sidecar")

        # Whichever replica Envoy's load balancer chose for the client is the one killed.
        eventually(
            lambda: connected_to(a, "productpage") or connected_to(b, "productpage"),
            20,
            "the client's sidecar in a replica's proxy-status",
        )
        victim, survivor = (a, b) if connected_to(a, "productpage") else (b, a)

        with Load(client) as load:
            eventually(lambda: load.ok >= 20, 20, "requests flowing")
            victim.kill(signal.SIGKILL)
            assert victim.proc.poll() is not None
            served_during = load.ok
            eventually(lambda: load.ok >= served_during + 50, 30, "requests after the kill")

            # Both Envoys come back on the survivor by themselves.
            for name in ("productpage", "reviews-v1"):
                eventually(partial(connected_to, survivor, name), 60, f"{name} on survivor")

            # A change through the survivor reaches the client's Envoy.
            res = survivor.cli("apply", "-f", "-", input=header_route("after"))
            assert res.returncode == 0, res.stderr
            eventually(lambda: served(client, "after"), 30, "the change through the survivor")
            after_change = load.ok
            eventually(lambda: load.ok >= after_change + 20, 20, "requests after the change")

        assert load.failures == [], f"{len(load.failures)} failed: {load.failures[:5]}"
        assert load.ok > 0

        # A new sidecar listing the dead replica first gets its certificate from the survivor.
        late = Mesh(victim, tmp_path, free_port, replicas=[survivor])
        late.sidecars = mesh.sidecars  # stopped with the others
        caller = late.add(
            "ratings", {"app": "ratings"}, app_port=None,
            service_account="bookinfo-ratings", mtls=True,
        )  # fmt: skip
        r = caller.request("reviews:9080", "/mtls")
        assert r.status_code == 200, r.text
        xfcc = r.json()["headers"]["x-forwarded-client-cert"]
        assert "URI=spiffe://cluster.local/ns/default/sa/bookinfo-ratings" in xfcc
    finally:
        mesh.stop()
