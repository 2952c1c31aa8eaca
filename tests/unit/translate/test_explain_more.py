"""The request explainer on generated protos, beyond plain HTTP in the mesh: TCP ports under
network RBAC, CUSTOM policies sent to an ext_authz provider, requests entering the ingress
gateway over TLS (SNI -> filter chain -> route), and faults that hit a share of requests."""

from __future__ import annotations

from typing import Any

from pilotfish.api.node import NodeInfo
from pilotfish.translate.explain import ExplainRequest, explain_request
from pilotfish.translate.tls import TLS_MODE_LABEL
from tests.unit.translate.fixtures import (
    BOOKINFO_CORE,
    from_yaml,
    pod,
    push_for,
    router_node,
    service,
    sidecar_node,
)
from tests.unit.translate.test_explain import DR, MESHED_PODS, REVIEWS
from tests.unit.xds.pem import CA, OTHER, SERVER, secret


def captured(app: str, ip: str, meshed: bool = True, version: str = "v1") -> NodeInfo:
    labels = {"app": app, "version": version}
    if meshed:
        labels[TLS_MODE_LABEL] = "istio"
    return sidecar_node(app, ip, labels=labels)


def client_step(out: dict[str, Any], stage: str) -> dict[str, Any]:
    return next(s for s in out["client"] if s["stage"] == stage)


def server_steps(out: dict[str, Any], stage: str) -> list[dict[str, Any]]:
    return [s for s in out["servers"][0]["steps"] if s["stage"] == stage]


# --- TCP and network RBAC ----------------------------------------------------------------------

PP = captured("productpage", "10.1.0.10")
SLEEP = captured("sleep", "10.1.0.20", meshed=False)
ECHO = captured("tcp-echo", "10.1.0.30")
TCP_DOCS = [
    service("tcp-echo", ports=[{"name": "tcp", "port": 9000}]),
    pod("tcp-echo-a", "10.1.0.30", {"app": "tcp-echo", "version": "v1", TLS_MODE_LABEL: "istio"}),
    pod("productpage-v1-a", "10.1.0.10", {"app": "productpage", "version": "v1",
        TLS_MODE_LABEL: "istio"}),
    pod("sleep-a", "10.1.0.20", {"app": "sleep", "version": "v1"}),
]  # fmt: skip

TCP_POLICIES = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: echo-viewer, namespace: default}
spec:
  selector: {matchLabels: {app: tcp-echo}}
  action: ALLOW
  rules:
  - from: [{source: {principals: ["cluster.local/ns/default/sa/bookinfo-productpage"]}}]
    to: [{operation: {ports: ["9000"]}}]
"""


def tcp_walk(extra: str, source: NodeInfo) -> dict[str, Any]:
    push = push_for(TCP_DOCS + from_yaml(extra))
    return explain_request(
        push, [PP, SLEEP, ECHO], source, ExplainRequest("GET", "tcp://tcp-echo:9000")
    )


def test_tcp_port_allowed_by_the_allow_policy_that_matched() -> None:
    out = tcp_walk(TCP_POLICIES, PP)
    assert client_step(out, "tcpProxy")
    v = out["verdict"]
    assert (v["allowed"], v["status"], v["policy"], v["rule"]) == (
        True,
        None,
        "default/echo-viewer",
        0,
    )
    authz = server_steps(out, "authorization")
    assert [a["name"] for a in authz] == ["ALLOW"] and authz[0]["verdict"] == "allow"


def test_tcp_port_closes_a_connection_no_allow_policy_matches() -> None:
    out = tcp_walk(TCP_POLICIES, SLEEP)  # plaintext: no principal
    v = out["verdict"]
    assert (v["allowed"], v["status"], v["policy"]) == (False, None, "default/echo-viewer")
    assert v["reason"] == "RBAC: connection closed"


def test_tcp_deny_policy_names_its_rule() -> None:
    deny = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-plaintext, namespace: default}
spec:
  action: DENY
  rules:
  - to: [{operation: {ports: ["8000"]}}]
  - from: [{source: {notPrincipals: ["*"]}}]
"""
    v = tcp_walk(deny, SLEEP)["verdict"]
    assert (v["allowed"], v["policy"], v["rule"]) == (False, "default/no-plaintext", 1)
    assert tcp_walk(deny, PP)["verdict"]["allowed"] is True


# --- CUSTOM: ext_authz ------------------------------------------------------------------------

BACKEND = captured("backend", "10.1.0.40")
CUSTOM = """
apiVersion: install.istio.io/v1alpha1
kind: IstioOperator
metadata: {name: mesh, namespace: istio-system}
spec:
  meshConfig:
    extensionProviders:
    - name: my-authz
      envoyExtAuthzHttp: {service: ext-authz.default.svc.cluster.local, port: 8000}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext, namespace: default}
spec:
  selector: {matchLabels: {app: backend}}
  action: CUSTOM
  provider: {name: my-authz}
  rules: [{to: [{operation: {paths: ["/admin/*"]}}]}]
"""
CUSTOM_DOCS = [
    service("backend"),
    service("ext-authz", ports=[{"name": "http", "port": 8000}]),
    pod("backend-a", "10.1.0.40", {"app": "backend", "version": "v1", TLS_MODE_LABEL: "istio"}),
    pod("productpage-v1-a", "10.1.0.10", {"app": "productpage", "version": "v1",
        TLS_MODE_LABEL: "istio"}),
]  # fmt: skip
AUTHZ_POD = pod("ext-authz-a", "10.1.0.41", {"app": "ext-authz", "version": "v1"})


def custom_walk(path: str, provider_up: bool = True, extra: str = "") -> dict[str, Any]:
    docs = CUSTOM_DOCS + ([AUTHZ_POD] if provider_up else []) + from_yaml(CUSTOM + extra)
    request = ExplainRequest("GET", f"http://backend:9080{path}")
    return explain_request(push_for(docs), [PP, BACKEND], PP, request)


def test_custom_rule_sends_the_request_to_the_named_provider() -> None:
    out = custom_walk("/admin/users")
    v = out["verdict"]
    assert v["allowed"] is None and v["policy"] == "default/ext" and v["rule"] == 0
    assert "my-authz" in v["reason"] and "not known offline" in v["reason"]
    custom = server_steps(out, "authorization")
    assert custom[0]["matched"].startswith("istio-ext-authz-ns[default]-policy[ext]")
    ext = server_steps(out, "extAuthz")[0]
    assert ext["name"] == ext["provider"] == "my-authz"
    assert ext["cluster"] == "outbound|8000||ext-authz.default.svc.cluster.local"


def test_request_no_custom_rule_matches_is_not_sent() -> None:
    out = custom_walk("/public")
    assert out["verdict"]["allowed"] is True
    custom = server_steps(out, "authorization")
    assert len(custom) == 1 and "not sent" in custom[0]["verdict"]


def test_provider_without_endpoints_denies_with_status_on_error() -> None:
    v = custom_walk("/admin/users", provider_up=False)["verdict"]
    assert (v["allowed"], v["status"], v["policy"]) == (False, 403, "default/ext")
    assert "my-authz is down" in v["reason"]


def test_a_deny_policy_after_custom_still_decides() -> None:
    deny = """
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: default}
spec:
  action: DENY
  rules: [{to: [{operation: {paths: ["/admin/*"]}}]}]
"""
    v = custom_walk("/admin/users", extra=deny)["verdict"]
    assert (v["allowed"], v["status"], v["policy"]) == (False, 403, "default/deny-admin")


# --- the ingress gateway over TLS ----------------------------------------------------------------

GATEWAY_TLS = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: web, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    tls: {mode: SIMPLE, credentialName: bookinfo}
    hosts: [bookinfo.example.com]
  - port: {number: 443, name: https-mutual, protocol: HTTPS}
    tls: {mode: MUTUAL, credentialName: mutual}
    hosts: ["*.mutual.example.com"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: default}
spec:
  hosts: [bookinfo.example.com, "*.mutual.example.com"]
  gateways: [web]
  http:
  - match: [{uri: {prefix: /reviews}, scheme: {exact: https}}]
    route: [{destination: {host: reviews, subset: v3}}]
  - route: [{destination: {host: reviews, subset: v1}}]
"""


def gateway_walk(url: str) -> dict[str, Any]:
    docs = [
        *BOOKINFO_CORE,
        *MESHED_PODS,
        *from_yaml(DR + "---" + GATEWAY_TLS),
        secret("bookinfo", tls_crt=SERVER.cert, tls_key=SERVER.key),
        secret("mutual", tls_crt=OTHER.cert, tls_key=OTHER.key),
        secret("mutual-cacert", cacert=CA.cert),
    ]
    gw = router_node(gateway_ports={80: 8080, 443: 8443})
    return explain_request(push_for(docs), [gw, *REVIEWS], gw, ExplainRequest("GET", url))


def test_simple_tls_at_the_gateway_sni_chain_route() -> None:
    out = gateway_walk("https://bookinfo.example.com/reviews/1")
    assert client_step(out, "listener")["address"].endswith(":8443")
    chain = client_step(out, "filterChain")
    assert (chain["sni"], chain["serverNames"]) == ("bookinfo.example.com", "bookinfo.example.com")
    tls = client_step(out, "tls")
    assert tls["name"] == "SIMPLE" and tls["serverCertificate"] == ["kubernetes://bookinfo"]
    assert client_step(out, "routeConfig")["name"] == "https.443.https.web.default"
    assert out["verdict"]["subsets"] == ["v3"] and out["verdict"]["allowed"] is True


def test_mutual_tls_by_wildcard_sni() -> None:
    out = gateway_walk("https://a.mutual.example.com/other")
    tls = client_step(out, "tls")
    assert tls["name"] == "MUTUAL" and tls["clientCa"] == "kubernetes://mutual-cacert"
    assert out["verdict"]["subsets"] == ["v1"]


def test_unknown_sni_finds_no_chain() -> None:
    v = gateway_walk("https://nobody.example.com/")["verdict"]
    assert v["allowed"] is False and "SNI nobody.example.com" in v["reason"]


def test_unknown_sni_is_not_taken_by_the_listener_of_another_port() -> None:
    # A plain HTTP server on port 80 has a chain that takes any connection; a TLS connection
    # to port 443 never reaches that listener (the gateway binds each port): no chain.
    http80 = """
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [bookinfo.example.com]
    tls: {httpsRedirect: true}
"""
    docs = [
        *BOOKINFO_CORE,
        *MESHED_PODS,
        *from_yaml(DR + "---" + GATEWAY_TLS.replace("\n---\n", http80 + "---\n", 1)),
        secret("bookinfo", tls_crt=SERVER.cert, tls_key=SERVER.key),
        secret("mutual", tls_crt=OTHER.cert, tls_key=OTHER.key),
        secret("mutual-cacert", cacert=CA.cert),
    ]
    gw = router_node(gateway_ports={80: 8080, 443: 8443})
    push = push_for(docs)
    out = explain_request(
        push, [gw, *REVIEWS], gw, ExplainRequest("GET", "http://bookinfo.example.com/")
    )
    assert client_step(out, "listener")["address"].endswith(":8080")  # the port-80 server is there
    out = explain_request(
        push, [gw, *REVIEWS], gw, ExplainRequest("GET", "https://nobody.example.com/")
    )
    v = out["verdict"]
    assert v["allowed"] is False and "SNI nobody.example.com" in v["reason"], out
    assert [s["stage"] for s in out["client"]] == [], out


# --- faults on a share of requests ---------------------------------------------------------------

FAULTS = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - fault:
      abort: {httpStatus: 503, percentage: {value: 25}}
      delay: {fixedDelay: 2s, percentage: {value: 10}}
    route: [{destination: {host: reviews, subset: v1}}]
"""


def test_percentage_faults_are_said_as_shares() -> None:
    push = push_for(BOOKINFO_CORE + MESHED_PODS + from_yaml(DR + "---" + FAULTS))
    pp = sidecar_node(
        "productpage",
        "10.1.0.10",
        interception_mode="NONE",
        outbound_port=15001,
        labels={"app": "productpage", "version": "v1", TLS_MODE_LABEL: "istio"},
    )
    out = explain_request(push, [pp, *REVIEWS], pp, ExplainRequest("GET", "http://reviews:9080/"))
    v = out["verdict"]
    assert v["allowed"] is True and v["subsets"] == ["v1"]
    assert v["faults"] == [
        "25% of requests abort with 503",
        "10% of requests are delayed by 2s",
    ]
