"""AuthorizationPolicy on the ingress gateway: a policy selecting the gateway's labels is
enforced by the gateway for requests from outside the mesh."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.authz.conftest import AuthzMesh, settled

pytestmark = pytest.mark.integration

GATEWAY = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: backend-gw, namespace: default}
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
  - route: [{destination: {host: backend, port: {number: 9080}}}]
"""

GATEWAY_POLICY = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ingress, namespace: istio-system}
spec:
  selector:
    matchLabels: {istio: ingressgateway}
  action: DENY
  rules:
  - to:
    - operation:
        paths: ["/admin*"]
  - to:
    - operation:
        hosts: ["blocked.example.com"]
"""


def test_policy_selecting_the_gateway_is_enforced_there(authz_mesh: AuthzMesh) -> None:
    mesh = authz_mesh.mesh
    mesh.apply(GATEWAY)
    gw = mesh.add(
        "istio-ingressgateway", {"istio": "ingressgateway"}, namespace="istio-system",
        proxy_type="router", gateway_ports=(80,),
    )  # fmt: skip
    assert gw.gateway_ports is not None
    url = f"http://{gw.ip}:{gw.gateway_ports[80]}"

    def observe() -> list[int]:
        return [
            httpx.get(f"{url}/admin/users", timeout=5).status_code,
            httpx.get(f"{url}/api", timeout=5).status_code,
            httpx.get(f"{url}/api", headers={"Host": "blocked.example.com"}, timeout=5).status_code,
            # Inside the mesh the backend has no policy.
            authz_mesh.get("/admin/users")[0],
        ]

    settled(observe, [200, 200, 200, 200], "the gateway routes to the backend")
    mesh.apply(GATEWAY_POLICY)
    try:
        settled(observe, [403, 200, 403, 200], "the gateway policy in force")
        r = httpx.get(f"{url}/admin", timeout=5)
        assert (r.status_code, r.text) == (403, "RBAC: access denied")
    finally:
        mesh.cp.cli("delete", "-f", "-", "--ignore-not-found", input=GATEWAY_POLICY)
