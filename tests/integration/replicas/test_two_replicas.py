"""Two control-plane replicas (real ``pilotfish server`` processes) on one PostgreSQL database.

Both replicas share the store and one CA directory (``--ca-dir``: the mesh root and the
workload token key, created by the first replica). The backends' sidecars connect to replica
A, the client's to replica B; the backends are known to B through WorkloadEntries applied
through A (a sidecar registers its endpoint only with the replica it is connected to). Then:

* a watch on B sees a VirtualService applied through A, at A's revision;
* B pushes it to the client's Envoy: traffic moves to the new subset;
* mutual TLS works between a sidecar whose certificate A signed and one whose certificate B
  signed (STRICT: plaintext is refused), with the identities in XFCC.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.harness import (
    ControlPlane,
    Mesh,
    Sidecar,
    eventually,
)

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
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec:
  mtls: {mode: STRICT}
"""


def workload_entry(sc: Sidecar, version: str) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: {sc.name}}}
spec:
  address: {sc.ip}
  ports: {{http: {sc.inbound_port}}}
  labels: {{app: reviews, version: {version}}}
  serviceAccount: bookinfo-reviews
"""


def route_to(subset: str) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews}}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {{host: reviews, subset: {subset}}}
"""


class Watch:
    """A watch on a replica's HTTP API, read in a thread."""

    def __init__(self, cp: ControlPlane, path: str, revision: int) -> None:
        self.events: list[dict[str, Any]] = []
        self.error: httpx.TransportError | None = None
        self._stop = threading.Event()
        self._url = f"{cp.url}{path}?watch=true&resourceVersion={revision}"
        self._headers = {"Authorization": f"Bearer {cp.token}"}
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        timeout = httpx.Timeout(5, read=None)
        try:
            with httpx.stream("GET", self._url, headers=self._headers, timeout=timeout) as resp:
                for line in resp.iter_lines():
                    if line.strip():
                        self.events.append(json.loads(line))
                    if self._stop.is_set():
                        return
        except httpx.TransportError as e:
            # The replica is killed at the test's end with the watch still open: the events
            # read so far are what the test checks; the cut is kept for a failure message.
            self.error = e


def versions(client: Sidecar, n: int = 10) -> set[str]:
    seen = set()
    for _ in range(n):
        r = client.request("reviews:9080", "/r")
        seen.add(r.json()["version"] if r.status_code == 200 else str(r.status_code))
    return seen


def test_a_change_through_one_replica_reaches_an_envoy_on_the_other(
    replicas: tuple[ControlPlane, ControlPlane], tmp_path: Path, free_port: Callable[[], int]
) -> None:
    a, b = replicas
    assert a.roots.read_text() == b.roots.read_text(), "the replicas must share one mesh root"
    on_a, on_b = Mesh(a, tmp_path, free_port), Mesh(b, tmp_path, free_port)
    try:
        on_a.apply(CONFIG)
        backends: dict[str, Sidecar] = {}
        for version in ("v1", "v2"):
            backends[version] = on_a.add(
                f"reviews-{version}", {"app": "reviews", "version": version},
                service_account="bookinfo-reviews", mtls=True,
            )  # fmt: skip
        for version, sc in backends.items():
            on_a.apply(workload_entry(sc, version))
        on_a.apply(route_to("v1"))
        client = on_b.add(
            "productpage", {"app": "productpage"}, app_port=None,
            service_account="bookinfo-productpage", mtls=True,
        )  # fmt: skip
        eventually(lambda: versions(client) == {"v1"}, 30, "reviews v1 through replica B")

        # Mutual TLS between certificates of the two replicas; plaintext is refused.
        r = client.request("reviews:9080", "/mtls")
        xfcc = r.json()["headers"]["x-forwarded-client-cert"]
        assert "By=spiffe://cluster.local/ns/default/sa/bookinfo-reviews" in xfcc
        assert "URI=spiffe://cluster.local/ns/default/sa/bookinfo-productpage" in xfcc
        v1 = backends["v1"]
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://{v1.ip}:{v1.inbound_port}/plain", timeout=5).raise_for_status()

        # A change applied through A: B's watch sees it and B pushes it to its Envoy.
        watch = Watch(
            b, "/apis/networking.istio.io/v1/namespaces/default/virtualservices", b.revision()
        )
        on_a.apply(route_to("v2"))
        applied_at = a.revision()
        eventually(lambda: len(watch.events) >= 1, 20, "the watch on replica B")
        event = watch.events[0]
        assert (event["type"], event["object"]["metadata"]["name"]) == ("MODIFIED", "reviews")
        assert event["object"]["metadata"]["resourceVersion"] == str(applied_at)
        assert b.revision() == applied_at
        eventually(lambda: versions(client) == {"v2"}, 30, "reviews v2 pushed by replica B")
        status = b.cli("proxy-status", check=True).stdout
        assert "productpage" in status
    finally:
        on_b.stop()
        on_a.stop()
