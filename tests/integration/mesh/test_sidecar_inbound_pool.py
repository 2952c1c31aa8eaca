"""A Sidecar's ``inboundConnectionPool`` on real traffic: the workload's sidecar limits the
connections and pending requests to its app (the inbound cluster's circuit breakers), so
requests past the limit get Envoy's 503 with ``x-envoy-overloaded``, as Istio applies it."""

from __future__ import annotations

import collections
import threading

import httpx

from tests.integration.harness import REVIEWS_SERVICE, Mesh, Sidecar, eventually

POOL = """
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: reviews, namespace: default}
spec:
  workloadSelector: {labels: {app: reviews}}
  inboundConnectionPool:
    tcp: {maxConnections: 1}
    http: {http1MaxPendingRequests: 1}
"""


def burst(sc: Sidecar) -> collections.Counter[tuple[int, str]]:
    """Eight slow requests at once to the workload's inbound listener: (status, overloaded)."""
    results: collections.Counter[tuple[int, str]] = collections.Counter()
    lock = threading.Lock()

    def call() -> None:
        r = httpx.get(f"http://{sc.ip}:{sc.inbound_port}/delay/700", timeout=30)
        with lock:
            results[(r.status_code, r.headers.get("x-envoy-overloaded", ""))] += 1

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(40)
    return results


def circuit_breaker(sc: Sidecar, what: str) -> str:
    """The inbound cluster's ``what`` threshold as the sidecar's Envoy holds it."""
    text = httpx.get(f"http://127.0.0.1:{sc.admin_port}/clusters", timeout=5).text
    prefix = f"inbound|9080||::default_priority::{what}::"
    return next((line[len(prefix) :] for line in text.splitlines() if line.startswith(prefix)), "")


def test_inbound_connection_pool_limits_requests_to_the_app(mesh: Mesh) -> None:
    mesh.apply(REVIEWS_SERVICE)
    reviews = mesh.add("reviews", {"app": "reviews", "version": "v1"})
    # Without the pool the inbound cluster is wide open: every request is served.
    eventually(lambda: circuit_breaker(reviews, "max_connections") == "4294967295", 30, "inbound")
    assert burst(reviews) == {(200, ""): 8}
    mesh.apply(POOL)
    eventually(lambda: circuit_breaker(reviews, "max_connections") == "1", 30, "the pool applied")
    assert circuit_breaker(reviews, "max_pending_requests") == "1"

    def overloaded() -> bool:
        results = burst(reviews)
        return results[(503, "true")] >= 1 and results[(200, "")] >= 1

    eventually(overloaded, 40, "503s marked x-envoy-overloaded beside successes")
