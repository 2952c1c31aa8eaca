"""The request explainer on generated protos: routes, weights, faults, mirrors, timeouts,
retries, missing routes and endpoints, mTLS refusal, RBAC verdicts with the deciding policy,
JWT issuers."""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any

from pilotfish.api.node import NodeInfo
from pilotfish.translate.explain import ExplainRequest, explain_request, subset_of
from pilotfish.translate.tls import TLS_MODE_LABEL
from tests.unit.translate.fixtures import (
    BOOKINFO_CORE,
    from_yaml,
    pod,
    push_for,
    router_node,
    sidecar_node,
)

DR = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - {name: v3, labels: {version: v3}}
"""


def explicit(app: str, ip: str, version: str = "v1", meshed: bool = True) -> NodeInfo:
    labels = {"app": app, "version": version}
    if meshed:
        labels[TLS_MODE_LABEL] = "istio"
    return sidecar_node(
        app,
        ip,
        interception_mode="NONE",
        outbound_port=15001,
        inbound_ports={9080: 15099},
        labels=labels,
    )


PP = explicit("productpage", "10.1.0.10")
#: The reviews pods with a workload identity: clients reach them over mTLS (auto mTLS).
MESHED_PODS = [
    pod(f"reviews-v{i + 1}-a", f"10.1.0.{12 + i}", {"app": "reviews", "version": f"v{i + 1}",
        TLS_MODE_LABEL: "istio"})
    for i in range(3)
]  # fmt: skip
PLAIN = explicit("sleep", "10.1.0.20", meshed=False)
REVIEWS = [explicit("reviews", f"10.1.0.{12 + i}", f"v{i + 1}") for i in range(3)]


def walk(
    extra: str,
    method: str = "GET",
    url: str = "http://reviews:9080/",
    source: NodeInfo = PP,
    **headers: str,
) -> dict[str, Any]:
    push = push_for(BOOKINFO_CORE + MESHED_PODS + from_yaml(DR + "---" + extra))
    return explain_request(push, [source, *REVIEWS], source, ExplainRequest(method, url, headers))


ROUTES = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
    timeout: 3s
    retries: {attempts: 4, perTryTimeout: 1s, retryOn: 5xx}
  - match: [{uri: {prefix: /fault}}]
    fault: {abort: {httpStatus: 418, percentage: {value: 100}}}
    route: [{destination: {host: reviews, subset: v1}}]
  - match: [{uri: {prefix: /split}}]
    route:
    - {destination: {host: reviews, subset: v1}, weight: 80}
    - {destination: {host: reviews, subset: v3}, weight: 20}
    mirror: {host: reviews, subset: v3}
  - route: [{destination: {host: reviews, subset: v1}}]
"""


def step(out: dict[str, Any], stage: str) -> dict[str, Any]:
    return next(s for s in out["client"] if s["stage"] == stage)


def test_header_route_with_timeout_and_retries() -> None:
    out = walk(ROUTES, **{"end-user": "jason"})
    assert out["verdict"]["subsets"] == ["v2"] and out["verdict"]["allowed"] is True
    route = step(out, "route")
    assert route["timeout"] == "3s"
    assert route["retries"]["attempts"] == 4 and route["retries"]["perTryTimeout"] == "1s"
    assert out["servers"][0]["endpoint"] == "10.1.0.13:9080"
    assert out["servers"][0]["proxy"] == "default/reviews-v1-a"
    assert walk(ROUTES, **{"end-user": "alice"})["verdict"]["subsets"] == ["v1"]


def test_fault_abort_answers_at_the_client() -> None:
    out = walk(ROUTES, url="http://reviews:9080/fault/x")
    assert out["verdict"]["status"] == 418 and out["verdict"]["allowed"] is False
    assert step(out, "route")["fault"]["abort"] == {"status": 418, "percent": 100.0}
    assert out["servers"] == []


def test_weighted_split_and_mirror() -> None:
    out = walk(ROUTES, url="http://reviews:9080/split")
    assert [(d["subset"], d["weight"]) for d in out["destinations"]] == [("v1", 80), ("v3", 20)]
    assert out["verdict"]["subsets"] == ["v1", "v3"]
    assert step(out, "route")["mirror"][0]["cluster"].startswith("outbound|9080|v3|reviews")


def test_unknown_host_is_404_at_the_client() -> None:
    out = walk(ROUTES, url="http://nowhere:9080/")
    assert out["verdict"]["status"] == 404 and "no virtual host" in out["verdict"]["reason"]


def test_subset_without_endpoints_is_503() -> None:
    vs = ROUTES.replace("subset: v2}}]\n    timeout", "subset: v9}}]\n    timeout")
    dr = DR + "  - {name: v9, labels: {version: v9}}\n"
    push = push_for(BOOKINFO_CORE + MESHED_PODS + from_yaml(dr + "---" + vs))
    out = explain_request(
        push,
        [PP, *REVIEWS],
        PP,
        ExplainRequest("GET", "http://reviews:9080/", {"end-user": "jason"}),
    )
    assert out["verdict"]["status"] == 503 and "no healthy upstream" in out["verdict"]["reason"]


POLICIES = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: default}
spec:
  action: DENY
  rules:
  - to: [{operation: {paths: ["/admin*"]}}]
  - when: [{key: "request.headers[x-block]", values: ["yes"]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: get-only, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  rules:
  - to: [{operation: {methods: [GET]}}]
"""


def test_deny_policy_and_rule_are_named() -> None:
    out = walk(POLICIES, url="http://reviews:9080/admin/x")
    v = out["verdict"]
    assert (v["allowed"], v["status"], v["policy"], v["rule"]) == (
        False,
        403,
        "default/deny-admin",
        0,
    )
    v = walk(POLICIES, **{"x-block": "yes"})["verdict"]
    assert (v["policy"], v["rule"]) == ("default/deny-admin", 1)


def test_allow_policy_decides_or_denies_when_nothing_matches() -> None:
    v = walk(POLICIES)["verdict"]
    assert (v["allowed"], v["policy"], v["rule"]) == (True, "default/get-only", 0)
    v = walk(POLICIES, method="POST")["verdict"]
    assert (v["allowed"], v["status"], v["policy"]) == (False, 403, "default/get-only")


def test_strict_mtls_refuses_a_plaintext_client() -> None:
    strict = """
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec: {mtls: {mode: STRICT}}
"""
    out = walk(strict, source=PLAIN)
    assert out["verdict"]["allowed"] is False and out["verdict"]["status"] == 503
    assert "plaintext" in out["verdict"]["reason"]
    assert "PeerAuthentication default/default is STRICT" in out["verdict"]["reason"]
    pa = next(s for s in out["servers"][0]["steps"] if s["stage"] == "peerAuthentication")
    assert pa == {"stage": "peerAuthentication", "name": "STRICT", "policy": "default/default"}
    meshed = walk(strict)
    assert meshed["verdict"]["allowed"] is True
    chain = next(s for s in meshed["servers"][0]["steps"] if s["stage"] == "filterChain")
    assert chain["peer"] == "spiffe://cluster.local/ns/default/sa/bookinfo-productpage"


def token(payload: dict[str, Any]) -> str:
    def b64(d: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")

    return f"{b64({'alg': 'RS256'})}.{b64(payload)}.sig"


def test_jwt_from_an_unknown_issuer_is_401_and_claims_reach_rbac() -> None:
    ra = """
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  jwtRules: [{issuer: good, jwks: '{"keys": []}'}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: admins, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  rules:
  - when: [{key: "request.auth.claims[group]", values: [admin]}]
"""
    bad = walk(ra, authorization=f"Bearer {token({'iss': 'evil', 'sub': 'x'})}")["verdict"]
    assert (bad["status"], bad["reason"]) == (401, "Jwt issuer is not configured")
    admin = token({"iss": "good", "sub": "u", "group": "admin"})
    assert walk(ra, authorization=f"Bearer {admin}")["verdict"]["allowed"] is True
    user = token({"iss": "good", "sub": "u", "group": "user"})
    assert walk(ra, authorization=f"Bearer {user}")["verdict"]["allowed"] is False
    assert walk(ra)["verdict"]["allowed"] is False


def test_subset_of_cluster_names() -> None:
    assert subset_of("outbound|9080|v1|reviews.default.svc.cluster.local") == "v1"
    assert subset_of("outbound|9080||reviews.default.svc.cluster.local") == ""
    assert subset_of("PassthroughCluster") == ""


def test_captured_pods_walk_the_virtual_listeners() -> None:
    def captured(app: str, ip: str, version: str) -> NodeInfo:
        labels = {"app": app, "version": version, TLS_MODE_LABEL: "istio"}
        return sidecar_node(app, ip, labels=labels)

    pp = captured("productpage", "10.1.0.10", "v1")
    reviews = [captured("reviews", f"10.1.0.{12 + i}", f"v{i + 1}") for i in range(3)]
    push = push_for(BOOKINFO_CORE + MESHED_PODS + from_yaml(DR + "---" + ROUTES + "---" + POLICIES))
    request = ExplainRequest("GET", "http://reviews:9080/admin", {"end-user": "jason"})
    out = explain_request(push, [pp, *reviews], pp, request)
    assert out["client"][0]["name"] == "virtualOutbound"
    assert step(out, "filterChain")["name"] == "0.0.0.0_9080"
    server = out["servers"][0]
    assert server["steps"][0]["stage"] == "peerAuthentication"
    assert server["steps"][0]["name"] == "PERMISSIVE"
    assert server["steps"][1] == {"stage": "inboundListener", "name": "virtualInbound"}
    v = out["verdict"]
    assert (v["subsets"], v["status"], v["policy"], v["rule"]) == (
        ["v2"],
        403,
        "default/deny-admin",
        0,
    )


def test_a_request_entering_through_the_ingress_gateway() -> None:
    push = push_for(BOOKINFO_CORE + MESHED_PODS + from_yaml(DR + "---" + GATEWAY))
    gw = router_node(gateway_ports={80: 8080, 443: 8443})
    request = ExplainRequest("GET", "http://bookinfo.example.com/reviews/1", {})
    out = explain_request(push, [gw, *REVIEWS], gw, request)
    assert out["client"][0]["address"].endswith(":8080")  # server port 80, bound on 8080
    assert step(out, "virtualHost")["authority"] == "bookinfo.example.com"
    assert out["verdict"]["subsets"] == ["v3"] and out["verdict"]["allowed"] is True
    other = ExplainRequest("GET", "http://other.example.com/", {})
    assert explain_request(push, [gw, *REVIEWS], gw, other)["verdict"]["status"] == 404


GATEWAY = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: web, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["bookinfo.example.com"]
  - port: {number: 9000, name: other, protocol: HTTP}
    hosts: ["bookinfo.example.com"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: default}
spec:
  hosts: ["bookinfo.example.com"]
  gateways: [web]
  http:
  - match: [{uri: {prefix: /reviews}}]
    route: [{destination: {host: reviews, subset: v3}}]
"""


VHDS_ON = """---
apiVersion: install.istio.io/v1alpha1
kind: IstioOperator
metadata: {name: vhds, namespace: istio-system}
spec: {meshConfig: {virtualHostDiscovery: true}}
"""


def test_a_sidecar_on_vhds_walks_the_same_routes() -> None:
    """A Delta sidecar gets its virtual hosts over VHDS: the walk reads them as Envoy holds
    them, inside their route config (named ``<route config>/<host:port>``), and finds the
    same route as over RDS."""
    delta = dataclasses.replace(PP, delta_xds=True)
    vhds = ROUTES + VHDS_ON
    for headers, subsets in (({"end-user": "jason"}, ["v2"]), ({}, ["v1"])):
        out, whole = walk(vhds, source=delta, **headers), walk(vhds, **headers)
        assert out["verdict"]["subsets"] == subsets
        assert step(out, "virtualHost")["name"] == "15001/" + step(whole, "virtualHost")["name"]
        step(out, "virtualHost")["name"] = step(whole, "virtualHost")["name"]
        assert out == whole
    assert walk(vhds, url="http://nowhere:9080/", source=delta)["verdict"]["status"] == 404
