"""The Sidecar resource on real traffic through real Envoys (sidecars in explicit mode).

A client in ``default`` calls ``reviews`` (same namespace) and ``httpbin`` (namespace
``other``). A namespace-wide Sidecar with egress ``./*`` + ``istio-system/*`` takes
``httpbin`` out of the client's config: the call no longer reaches it and the client's Envoy
has no cluster for it, while ``reviews`` keeps answering.
"""

from __future__ import annotations

import httpx

from tests.integration.harness import REVIEWS_SERVICE, Mesh, Sidecar, eventually

SERVICES = (
    REVIEWS_SERVICE
    + """
---
apiVersion: v1
kind: Namespace
metadata: {name: other}
---
apiVersion: v1
kind: Service
metadata: {name: httpbin, namespace: other}
spec:
  selector: {app: httpbin}
  ports: [{name: http, port: 9080}]
"""
)
HTTPBIN = "httpbin.other.svc.cluster.local:9080"
HTTPBIN_CLUSTER = "outbound|9080||httpbin.other.svc.cluster.local"


def sidecar(policy: str = "") -> str:
    otp = f"\n  outboundTrafficPolicy: {{mode: {policy}}}" if policy else ""
    return f"""
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: default, namespace: default}}
spec:
  egress:
  - hosts: ["./*", "istio-system/*"]{otp}
"""


def clusters(sc: Sidecar) -> set[str]:
    dump = httpx.get(f"http://127.0.0.1:{sc.admin_port}/clusters?format=json", timeout=5).json()
    return {c["name"] for c in dump.get("cluster_statuses", [])}


def test_a_namespace_sidecar_scopes_egress_to_its_namespace(mesh: Mesh) -> None:
    mesh.apply(SERVICES)
    mesh.add("reviews", {"app": "reviews", "version": "v1"})
    mesh.add("httpbin", {"app": "httpbin"}, namespace="other")
    client = mesh.add("productpage", {"app": "productpage"}, app_port=None)
    eventually(lambda: client.request(HTTPBIN).status_code == 200, what="httpbin reachable")
    assert client.request(HTTPBIN).json()["name"] == "httpbin"
    assert HTTPBIN_CLUSTER in clusters(client)

    mesh.apply(sidecar())
    # Out of scope: no route and no cluster (explicit mode has no original destination to
    # pass through to, so the unknown host is not routed: 404).
    eventually(lambda: HTTPBIN_CLUSTER not in clusters(client), what="httpbin cluster removed")
    assert client.request(HTTPBIN).status_code == 404
    same = client.request("reviews:9080")
    assert same.status_code == 200 and same.json()["name"] == "reviews"

    # REGISTRY_ONLY in the Sidecar: what is not in scope gets Istio's 502 (block_all).
    mesh.apply(sidecar("REGISTRY_ONLY"))
    eventually(lambda: client.request(HTTPBIN).status_code == 502, what="block_all")
    assert client.request("unknown.example.com").status_code == 502
    assert client.request("reviews:9080").status_code == 200

    # The Sidecar removed: the client sees httpbin again.
    assert mesh.cp.cli("delete", "sidecar", "default", "-n", "default").returncode == 0
    eventually(lambda: client.request(HTTPBIN).status_code == 200, what="httpbin back")


def test_a_workload_selector_sidecar_scopes_only_its_workloads(mesh: Mesh) -> None:
    mesh.apply(SERVICES)
    mesh.add("httpbin", {"app": "httpbin"}, namespace="other")
    scoped = mesh.add("productpage", {"app": "productpage"}, app_port=None)
    free = mesh.add("tester", {"app": "tester"}, app_port=None)
    mesh.apply(
        sidecar().replace("name: default,", "name: productpage,")
        + "  workloadSelector: {labels: {app: productpage}}\n"
    )
    eventually(lambda: HTTPBIN_CLUSTER not in clusters(scoped), what="scoped")
    assert scoped.request(HTTPBIN).status_code == 404
    eventually(lambda: free.request(HTTPBIN).status_code == 200, what="unscoped reaches httpbin")
    assert HTTPBIN_CLUSTER in clusters(free)


MESH_REGISTRY_ONLY = """
apiVersion: install.istio.io/v1alpha1
kind: IstioOperator
metadata: {name: registry-only, namespace: istio-system}
spec:
  meshConfig:
    outboundTrafficPolicy: {mode: REGISTRY_ONLY}
"""


def test_mesh_config_registry_only_blocks_unknown_hosts_mesh_wide(mesh: Mesh) -> None:
    mesh.apply(SERVICES)
    mesh.add("reviews", {"app": "reviews", "version": "v1"})
    client = mesh.add("productpage", {"app": "productpage"}, app_port=None)
    eventually(lambda: client.request("reviews:9080").status_code == 200, what="reviews")
    assert client.request("unknown.example.com").status_code == 404  # ALLOW_ANY: no route
    mesh.apply(MESH_REGISTRY_ONLY)
    eventually(lambda: client.request("unknown.example.com").status_code == 502, what="502")
    assert client.request("reviews:9080").status_code == 200  # registered: allowed
    # A Sidecar's ALLOW_ANY wins over the mesh for its workloads.
    mesh.apply(sidecar("ALLOW_ANY").replace('["./*", "istio-system/*"]', '["*/*"]'))
    eventually(lambda: client.request("unknown.example.com").status_code == 404, what="404")
    mesh.cp.cli("delete", "-f", "-", input=MESH_REGISTRY_ONLY, check=True)


EGRESS_PROXY = """
apiVersion: v1
kind: Service
metadata: {name: egress-proxy}
spec:
  selector: {app: egress-proxy}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: default}
spec:
  outboundTrafficPolicy:
    mode: ALLOW_ANY
    egressProxy:
      host: egress-proxy.default.svc.cluster.local
      port: {number: 9080}
"""


def test_an_egress_proxy_receives_what_is_not_in_the_registry(mesh: Mesh) -> None:
    """``outboundTrafficPolicy.egressProxy`` (ALLOW_ANY): a request for a host the mesh does
    not know goes to the egress proxy's service instead of out directly."""
    mesh.apply(REVIEWS_SERVICE)
    mesh.add("reviews", {"app": "reviews", "version": "v1"})
    client = mesh.add("productpage", {"app": "productpage"}, app_port=None)
    eventually(lambda: client.request("reviews:9080").status_code == 200, what="reviews")
    # Explicit mode under ALLOW_ANY: an unknown host has no route.
    assert client.request("unknown.example.com").status_code == 404
    mesh.add("egress-proxy", {"app": "egress-proxy"})
    mesh.apply(EGRESS_PROXY)

    def proxied() -> bool:
        r = client.request("unknown.example.com")
        return r.status_code == 200 and r.json()["name"] == "egress-proxy"

    eventually(proxied, 30, "the unknown host sent to the egress proxy")
    assert client.request("reviews:9080").json()["name"] == "reviews"
