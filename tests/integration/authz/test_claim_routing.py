"""JWT claim based routing at the ingress gateway, as Istio's claim-based routing task: a
RequestAuthentication on the gateway, and a VirtualService matching
``@request.auth.claims.*`` (a nested claim and a list claim). The claims are read from the
payload ``jwt_authn`` verified (Envoy dynamic metadata), never from a request header."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.authz.conftest import AuthzMesh, settled
from tests.integration.authz.jwt_issuer import Issuer

pytestmark = pytest.mark.integration


def config(issuer: Issuer) -> str:
    return f"""
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: ingress-jwt, namespace: istio-system}}
spec:
  selector:
    matchLabels: {{istio: ingressgateway}}
  jwtRules:
  - issuer: "{issuer.issuer}"
    jwks: '{issuer.jwks()}'
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: claims-gw, namespace: default}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 80, name: http, protocol: HTTP}}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: claims, namespace: default}}
spec:
  hosts: ["*"]
  gateways: [claims-gw]
  http:
  - match:
    - headers:
        "@request.auth.claims.nested.key1": {{exact: value1}}
    route: [{{destination: {{host: backend, port: {{number: 9080}}}}}}]
    headers: {{request: {{set: {{x-routed-by: nested}}}}}}
  - match:
    - headers:
        "@request.auth.claims.groups": {{exact: group1}}
    route: [{{destination: {{host: backend, port: {{number: 9080}}}}}}]
    headers: {{request: {{set: {{x-routed-by: groups}}}}}}
  - route: [{{destination: {{host: backend, port: {{number: 9080}}}}}}]
    headers: {{request: {{set: {{x-routed-by: default}}}}}}
"""


def test_virtual_service_matches_jwt_claims_at_the_gateway(authz_mesh: AuthzMesh) -> None:
    issuer = Issuer()
    mesh = authz_mesh.mesh
    text = config(issuer)
    mesh.apply(text)
    try:
        gw = mesh.add(
            "claims-gateway", {"istio": "ingressgateway"}, namespace="istio-system",
            proxy_type="router", gateway_ports=(80,),
        )  # fmt: skip
        assert gw.gateway_ports is not None
        url = f"http://{gw.ip}:{gw.gateway_ports[80]}/headers"

        def routed(token: str | None = None, **headers: str) -> str:
            if token:
                headers["Authorization"] = f"Bearer {token}"
            r = httpx.get(url, headers=headers, timeout=5)
            if r.status_code != 200:
                return str(r.status_code)
            return str(r.json()["headers"].get("x-routed-by"))

        nested = issuer.token(nested={"key1": "value1"})
        other = issuer.token(nested={"key1": "value2"})
        grouped = issuer.token(groups=["group0", "group1"])
        settled(
            lambda: [routed(nested), routed(other), routed(grouped), routed()],
            ["nested", "default", "groups", "default"],
            "claim based routing",
        )
        # A token that does not verify is refused by jwt_authn (401), whatever it claims.
        assert routed(issuer.forged(nested={"key1": "value1"})) == "401"
    finally:
        mesh.cp.cli("delete", "-f", "-", "--ignore-not-found", input=text)
