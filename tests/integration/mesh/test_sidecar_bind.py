"""A Sidecar egress listener with ``captureMode: NONE`` and ``bind``, on real traffic: the
sidecar opens a real HTTP listener on ``bind:port`` that the app sends its requests to (no
capture needed), routing the hosts that listener imports, as Istio's "bound" egress
listeners do."""

from __future__ import annotations

import httpx

from tests.integration.harness import REVIEWS_SERVICE, Mesh, eventually

SERVICES = (
    REVIEWS_SERVICE
    + """
---
apiVersion: v1
kind: Service
metadata: {name: ratings}
spec:
  selector: {app: ratings}
  ports: [{name: http, port: 9080}]
"""
)


def bound_sidecar(ip: str) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: bound, namespace: default}}
spec:
  workloadSelector: {{labels: {{app: productpage}}}}
  egress:
  - port: {{number: 9080, protocol: HTTP, name: http}}
    bind: {ip}
    captureMode: NONE
    hosts: [./reviews.default.svc.cluster.local]
  - hosts: ["./*"]
  outboundTrafficPolicy: {{mode: REGISTRY_ONLY}}
"""


def test_a_bound_egress_listener_serves_the_hosts_it_imports(mesh: Mesh) -> None:
    mesh.apply(SERVICES)
    mesh.add("reviews", {"app": "reviews", "version": "v1"})
    mesh.add("ratings", {"app": "ratings", "version": "v1"})
    client = mesh.add("productpage", {"app": "productpage"}, app_port=None)
    mesh.apply(bound_sidecar(client.ip))
    bound = f"http://{client.ip}:9080/"

    def call(host: str) -> int:
        return httpx.get(bound, headers={"Host": host}, timeout=5).status_code

    # The bound listener appears on the client's own address and routes reviews ...
    eventually(lambda: call("reviews:9080") == 200, 30, "the bound egress listener")
    assert httpx.get(bound, headers={"Host": "reviews"}, timeout=5).json()["name"] == "reviews"
    # ... and only the hosts it imports: ratings is not on this listener (REGISTRY_ONLY:
    # Istio's 502).
    assert call("ratings:9080") == 502
