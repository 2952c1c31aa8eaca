"""Generated RBAC and jwt_authn configs load in the real Envoy (``envoy --mode validate``):
every AuthorizationPolicy field on HTTP and TCP chains, every RequestAuthentication field,
sidecars in both interception modes and a gateway."""

from __future__ import annotations

from pathlib import Path

import pytest

from pilotfish.api.node import NodeInfo
from pilotfish.translate import LISTENER_TYPE, generate
from tests.integration.authz.jwt_issuer import Issuer
from tests.integration.translate.static_envoy import validate
from tests.unit.translate.fixtures import (
    BOOKINFO_CORE,
    from_yaml,
    pod,
    push_for,
    router_node,
    service,
    sidecar_node,
)

pytestmark = pytest.mark.integration

JWKS = Issuer().jwks()

POLICIES = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-all-fields, namespace: default}
spec:
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/default/sa/frontend", "*/sa/x", "cluster.local/*", "*"]
        notPrincipals: ["cluster.local/ns/bad/sa/bad"]
        namespaces: ["default", "team-*"]
        notNamespaces: ["*-test"]
        ipBlocks: ["10.0.0.0/8", "192.168.0.1"]
        notIpBlocks: ["10.9.0.0/16"]
        remoteIpBlocks: ["2001:db8::/32"]
        notRemoteIpBlocks: ["::1"]
    - source:
        requestPrincipals: ["https://auth.example.com/*", "*/alice", "*"]
        notRequestPrincipals: ["https://auth.example.com/eve"]
        serviceAccounts: ["frontend", "other/builder"]
        notServiceAccounts: ["robot"]
    to:
    - operation:
        hosts: ["reviews", "*.example.com", "api.*", "*"]
        notHosts: ["admin.example.com"]
        ports: ["9080", "27017"]
        notPorts: ["1"]
        methods: ["GET", "POST"]
        notMethods: ["TRACE"]
        paths: ["/exact", "/api/*", "*.html", "*", "/v1/{*}/items", "/files/{**}"]
        notPaths: ["/admin*", "/v1/{*}/secret"]
    when:
    - {key: "request.headers[x-user]", values: ["alice", "*"], notValues: ["eve"]}
    - {key: source.ip, values: ["127.0.0.1"]}
    - {key: remote.ip, values: ["10.0.0.0/8"]}
    - {key: source.namespace, values: ["default"]}
    - {key: source.principal, values: ["cluster.local/ns/default/sa/frontend"]}
    - {key: source.serviceAccount, values: ["default/frontend"]}
    - {key: request.auth.principal, values: ["https://auth.example.com/alice"]}
    - {key: request.auth.audiences, values: ["svc"]}
    - {key: request.auth.presenter, values: ["app*"]}
    - {key: "request.auth.claims[groups]", values: ["admin"]}
    - {key: "request.auth.claims[realm][roles]", values: ["*ops"]}
    - {key: destination.ip, values: ["10.1.0.12", "10.1.0.0/16"]}
    - {key: destination.port, values: ["9080"]}
    - {key: connection.sni, values: ["*.svc.cluster.local"]}
    - {key: "experimental.envoy.filters.network.mysql_proxy[db.table]", values: ["[update]"]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny, namespace: default}
spec:
  action: DENY
  rules:
  - to: [{operation: {methods: [DELETE], paths: ["/x"]}}]
    from: [{source: {requestPrincipals: ["*"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: audit, namespace: istio-system}
spec:
  action: AUDIT
  rules: [{to: [{operation: {paths: ["/audit"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: dry, namespace: default, annotations: {istio.io/dry-run: "true"}}
spec:
  rules: [{}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: custom, namespace: default}
spec:
  action: CUSTOM
  provider: {name: ext-authz}
  rules: [{}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: gateway, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  rules:
  - from: [{source: {remoteIpBlocks: ["203.0.113.0/24"]}}]
    to: [{operation: {hosts: ["bookinfo.example.com"], ports: ["8080"]}}]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: istio-system}
spec:
  jwtRules:
  - issuer: https://auth.example.com
    jwksUri: https://auth.example.com/.well-known/jwks.json
    audiences: [svc, other]
    fromHeaders: [{name: x-jwt, prefix: "Bearer "}, {name: x-raw}]
    fromParams: [token]
    fromCookies: [session]
    forwardOriginalToken: true
    outputClaimToHeaders: [{header: x-group, claim: groups}, {header: x-sub, claim: sub}]
    outputPayloadToHeader: x-payload
    spaceDelimitedClaims: [roles]
  - issuer: https://accounts.example.org
  - issuer: inline
    jwks: 'JWKS'
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
"""

EVERYTHING = [
    *from_yaml(POLICIES.replace("'JWKS'", repr(JWKS))),
    service("mongo", ports=[{"name": "tcp-mongo", "port": 27017}], selector={"app": "reviews"}),
    pod("other-a", "10.1.0.40", {"app": "other"}),
]

REVIEWS: dict[str, NodeInfo] = {
    "redirect": sidecar_node(
        app="reviews", ip="10.1.0.12", labels={"app": "reviews", "version": "v1"}
    ),
    "explicit": sidecar_node(
        app="reviews",
        ip="127.0.0.1",
        labels={"app": "reviews", "version": "v1"},
        interception_mode="NONE",
        outbound_port=15301,
        inbound_ports={9080: 15302, 27017: 15303},
    ),
}


@pytest.mark.parametrize("mode", sorted(REVIEWS))
@pytest.mark.parametrize("keys", ["fetched", "unknown"])
def test_every_field_loads_in_envoy(mode: str, keys: str, tmp_path: Path) -> None:
    push = push_for(
        BOOKINFO_CORE + EVERYTHING, jwks=(lambda uri: JWKS) if keys == "fetched" else None
    )
    resources = generate(REVIEWS[mode], push)
    text = str(resources[LISTENER_TYPE])
    for name in ("envoy.filters.http.rbac", "envoy.filters.network.rbac", "jwt_authn"):
        assert name in text
    validate(resources, tmp_path, f"authz-{mode}-{keys}")


def test_gateway_with_policies_loads_in_envoy(tmp_path: Path) -> None:
    push = push_for(BOOKINFO_CORE + EVERYTHING)
    resources = generate(router_node(gateway_ports={80: 8080}), push)
    assert "envoy.filters.http.rbac" in str(resources[LISTENER_TYPE])
    validate(resources, tmp_path, "authz-gateway")
