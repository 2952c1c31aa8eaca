"""One YAML that triggers each code and one that does not: IST0103, IST0116, IST0134, IST0137,
IST0138, IST0140, IST0144, IST0149, IST0150, IST0161, IST0167, IST0173, IST0174 (in
test_destinationrule), IST0177, IST0130/IST0131 for TCP and TLS, suppression, lenient pods."""

from __future__ import annotations

import base64

from pilotfish.config.analyze import Suppression, analyze, suppress
from pilotfish.config.analyze.destinationrule import analyze_subset_workloads
from pilotfish.config.analyze.gateway import (
    analyze_duplicate_certificates,
    analyze_gateway_workloads,
    analyze_invalid_credentials,
)
from pilotfish.config.analyze.kube import (
    analyze_application_uid,
    analyze_deployment_services,
    analyze_missing_proxy,
    analyze_sidecar_ambient,
)
from pilotfish.config.analyze.matches import analyze_unreachable_rules
from pilotfish.config.analyze.security import analyze_authorization_workloads
from pilotfish.config.analyze.serviceentry import (
    analyze_conflicting_protocols,
    analyze_protocol_addresses,
)
from pilotfish.config.analyze.virtualservice import (
    analyze_ingress_subsets,
    analyze_jwt_claim_routes,
)
from pilotfish.config.analyze.workloads import analyze_port_names
from tests.unit.config.analyze._util import SERVICES, codes, inputs, run, texts

INJECTED_NS = """
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio-injection: enabled}}
"""


def pod(
    name: str = "web-1", annotations: str = "{}", containers: str = "[{name: app, image: x}]"
) -> str:
    return f"""
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: shop, labels: {{app: web}}, annotations: {annotations}}}
spec: {{containers: {containers}}}
status: {{phase: Running}}
"""


# --- IST0103 ---------------------------------------------------------------------------------


def test_running_pod_without_proxy_in_injected_namespace_is_ist0103() -> None:
    msgs = run(analyze_missing_proxy, INJECTED_NS, pod())
    assert codes(msgs) == ["IST0103"]
    assert texts(msgs) == [
        "The pod web-1 is missing the Istio proxy. This can often be resolved by restarting "
        "or redeploying the workload."
    ]


def test_injected_or_opted_out_pods_are_not_ist0103() -> None:
    injected = pod(annotations='{sidecar.istio.io/status: "{}"}')
    opted_out = pod(annotations='{sidecar.istio.io/inject: "false"}')
    assert run(analyze_missing_proxy, INJECTED_NS, injected, opted_out.replace("web-1", "w2")) == []
    # a pod not yet running (from a file) is injected when it starts
    assert run(analyze_missing_proxy, INJECTED_NS, pod().split("status:")[0]) == []
    plain = INJECTED_NS.replace("istio-injection: enabled", "team: a")
    assert run(analyze_missing_proxy, plain, pod()) == []


# --- IST0116 / IST0137 -----------------------------------------------------------------------

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: app, image: x}]}
"""


def svc(name: str, port: int, port_name: str, target: int | None = None) -> str:
    target_text = f", targetPort: {target}" if target is not None else ""
    return f"""
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: shop}}
spec:
  selector: {{app: web}}
  ports: [{{name: {port_name}, port: {port}{target_text}}}]
"""


def test_same_port_different_protocols_is_ist0116() -> None:
    msgs = run(
        analyze_deployment_services, DEPLOYMENT, svc("a", 9080, "http"), svc("b", 9080, "tcp")
    )
    assert texts(msgs) == [
        "This deployment web is associated with multiple services using port 9080 but "
        "different protocols: [a b]"
    ]
    same = run(
        analyze_deployment_services, DEPLOYMENT, svc("a", 9080, "http"), svc("b", 9080, "http-x")
    )
    assert same == []


def test_same_target_port_different_ports_is_ist0137() -> None:
    msgs = run(
        analyze_deployment_services,
        DEPLOYMENT,
        svc("a", 80, "http", 8080),
        svc("b", 9080, "http", 8080),
    )
    assert texts(msgs) == [
        'This deployment web is associated with multiple services [a b] using targetPort "8080" '
        "but different ports: [80 9080]."
    ]
    ok = run(
        analyze_deployment_services,
        DEPLOYMENT,
        svc("a", 80, "http", 8080),
        svc("b", 80, "http", 8080),
    )
    assert ok == []


# --- IST0144 ---------------------------------------------------------------------------------


def test_uid_1337_is_ist0144() -> None:
    as_proxy = DEPLOYMENT.replace(
        "spec: {containers", "spec: {securityContext: {runAsUser: 1337}, containers"
    )
    msgs = run(analyze_application_uid, as_proxy)
    assert texts(msgs) == ["User ID (UID) 1337 is reserved for the sidecar proxy."]
    assert msgs[0].path == "spec.template.spec.securityContext.runAsUser"
    container = pod(containers="[{name: app, image: x, securityContext: {runAsUser: 1337}}]")
    assert codes(run(analyze_application_uid, container)) == ["IST0144"]
    assert (
        run(
            analyze_application_uid,
            DEPLOYMENT.replace("containers", "securityContext: {runAsUser: 1000}, containers", 1),
        )
        == []
    )


# --- IST0134 / IST0177 -----------------------------------------------------------------------


def se(name: str, host: str, protocol: str | None, addresses: str = "") -> str:
    proto = f", protocol: {protocol}" if protocol else ""
    return f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: default}}
spec:
  hosts: ["{host}"]
  {addresses}
  ports: [{{number: 443, name: p{name}{proto}}}]
  resolution: NONE
"""


def test_tcp_wildcard_entry_without_addresses_is_ist0134() -> None:
    msgs = run(analyze_protocol_addresses, se("w", "*.example.com", "TCP"))
    assert texts(msgs) == ["ServiceEntry addresses are required for this protocol."]
    assert codes(run(analyze_protocol_addresses, se("u", "*.example.com", None))) == ["IST0134"]
    # an address, an HTTP port, or a host that gets an allocated VIP: no message
    assert (
        run(analyze_protocol_addresses, se("a", "*.example.com", "TCP", "addresses: [240.0.0.1]"))
        == []
    )
    assert run(analyze_protocol_addresses, se("h", "*.example.com", "HTTP")) == []
    assert run(analyze_protocol_addresses, se("v", "api.example.com", "TCP")) == []


def test_same_host_and_port_with_two_protocols_is_ist0177() -> None:
    msgs = run(
        analyze_conflicting_protocols,
        se("api-http", "api.example.com", "HTTP"),
        se("api-tls", "api.example.com", "TLS"),
    )
    assert sorted(str(m.resource) for m in msgs) == [
        "ServiceEntry default/api-http",
        "ServiceEntry default/api-tls",
    ]
    assert msgs[0].text == (
        "Multiple ServiceEntries (default/api-http, default/api-tls) define the same host "
        '"api.example.com" and port 443 with conflicting protocols (HTTP, TLS).'
    )
    same = run(
        analyze_conflicting_protocols,
        se("a", "api.example.com", "TLS"),
        se("b", "api.example.com", "TLS"),
    )
    assert same == []


# --- IST0150 ---------------------------------------------------------------------------------


def external(port_name: str) -> str:
    return f"""
apiVersion: v1
kind: Service
metadata: {{name: ext, namespace: default}}
spec:
  type: ExternalName
  externalName: example.com
  ports: [{{name: {port_name}, port: 443}}]
"""


def test_external_name_tcp_port_is_ist0150() -> None:
    msgs = run(analyze_port_names, external("tcp"))
    assert codes(msgs) == ["IST0150"]
    assert msgs[0].text.startswith("Port name for ExternalName service is invalid.")
    assert run(analyze_port_names, external("https")) == []


# --- IST0138 / IST0161 / IST0162 -------------------------------------------------------------


def tls_gateway(name: str, credential: str, selector: str = "{istio: ingressgateway}") -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: {name}, namespace: istio-system}}
spec:
  selector: {selector}
  servers:
  - port: {{number: 443, name: https, protocol: HTTPS}}
    hosts: ["{name}.example.com"]
    tls: {{mode: SIMPLE, credentialName: {credential}}}
"""


def test_two_gateways_with_one_certificate_is_ist0138() -> None:
    msgs = run(analyze_duplicate_certificates, tls_gateway("a", "cert"), tls_gateway("b", "cert"))
    assert sorted(texts(msgs)) == [
        "Duplicate certificate in multiple gateways [istio-system/a istio-system/b] may cause "
        "404s if clients re-use HTTP2 connections.",
        "Duplicate certificate in multiple gateways [istio-system/b istio-system/a] may cause "
        "404s if clients re-use HTTP2 connections.",
    ]
    assert run(analyze_duplicate_certificates, tls_gateway("a", "c1"), tls_gateway("b", "c2")) == []


CERT = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n"
KEY = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49\n-----END PRIVATE KEY-----\n"


def secret(crt: str, key: str) -> str:
    b64 = base64.b64encode
    return f"""
apiVersion: v1
kind: Secret
metadata: {{name: cert, namespace: istio-system}}
type: kubernetes.io/tls
data: {{tls.crt: {b64(crt.encode()).decode()}, tls.key: {b64(key.encode()).decode()}}}
"""


def test_credential_without_pem_certificate_is_ist0161() -> None:
    msgs = run(analyze_invalid_credentials, tls_gateway("a", "cert"), secret("not a cert", KEY))
    assert texts(msgs) == [
        "The credential referenced by the Gateway a in namespace istio-system is invalid, which "
        "can cause the traffic not to work as expected."
    ]
    assert run(analyze_invalid_credentials, tls_gateway("a", "cert"), secret(CERT, KEY)) == []


def test_gateway_with_custom_labels_checks_its_service_ports_ist0162() -> None:
    gw_deploy = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: edge, namespace: edge}
spec:
  selector: {matchLabels: {gateway: edge}}
  template:
    metadata: {labels: {gateway: edge}}
    spec: {containers: [{name: istio-proxy, image: auto}]}
---
apiVersion: v1
kind: Service
metadata: {name: edge, namespace: edge}
spec:
  selector: {gateway: edge}
  ports: [{name: https, port: 443}]
"""
    gw = tls_gateway("a", "cert", selector="{gateway: edge}")
    assert run(analyze_gateway_workloads, gw_deploy, gw) == []
    msgs = run(analyze_gateway_workloads, gw_deploy, gw.replace("number: 443", "number: 8443"))
    assert codes(msgs) == ["IST0162"]
    assert "(port 8443)" in msgs[0].text and "gateway=edge" in msgs[0].text


# --- IST0149 / IST0140 -----------------------------------------------------------------------

GATEWAY = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: web, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
"""
CLAIM_VS = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: claims, namespace: default}
spec:
  hosts: ["*"]
  gateways: [web]
  http:
  - match: [{headers: {"@request.auth.claims.groups": {exact: admin}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route: [{destination: {host: reviews}}]
"""
RA = """
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  jwtRules: [{issuer: me, jwksUri: "https://example.com/jwks"}]
"""


def test_claim_routing_without_request_authentication_is_ist0149() -> None:
    msgs = run(analyze_jwt_claim_routes, SERVICES, GATEWAY, CLAIM_VS)
    assert texts(msgs) == [
        "The virtual service uses the JWT claim based routing (key: "
        "@request.auth.claims.groups) but found no request authentication for the gateway "
        "(default/web) pod (istio-ingressgateway). The request authentication must first be "
        "applied for the gateway pods to validate the JWT token and make the claims available "
        "for routing."
    ]
    assert run(analyze_jwt_claim_routes, SERVICES, GATEWAY, CLAIM_VS, RA) == []


MESH_SPLIT = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews, subset: v1}}]
"""
INGRESS_VS = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: front, namespace: default}
spec:
  hosts: ["*"]
  gateways: [web]
  http:
  - route: [{destination: {host: reviews}}]
"""


def test_gateway_route_without_subset_skips_the_split_ist0140() -> None:
    msgs = run(analyze_ingress_subsets, SERVICES, GATEWAY, MESH_SPLIT, INGRESS_VS)
    assert texts(msgs) == [
        "Subset in virtual service default/reviews has no effect on ingress gateway "
        "default/front requests"
    ]
    with_subset = INGRESS_VS.replace("{host: reviews}", "{host: reviews, subset: v1}")
    assert run(analyze_ingress_subsets, SERVICES, GATEWAY, MESH_SPLIT, with_subset) == []


# --- IST0167 ---------------------------------------------------------------------------------


def test_sidecar_in_ambient_namespace_is_ist0167() -> None:
    ns = """
apiVersion: v1
kind: Namespace
metadata: {name: amb, labels: {istio.io/dataplane-mode: ambient}}
"""
    sidecar = """
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: amb}
spec: {egress: [{hosts: ["./*"]}]}
"""
    msgs = run(analyze_sidecar_ambient, ns, sidecar)
    assert texts(msgs) == [
        "The policy has no impact: namespace is in ambient mode, the policy has no impact."
    ]
    assert run(analyze_sidecar_ambient, ns.replace("ambient}", "none}"), sidecar) == []


# --- IST0173 ---------------------------------------------------------------------------------


def test_subset_selecting_no_workload_is_ist0173() -> None:
    dr = SERVICES.replace("{name: v2, labels: {version: v2}}", "{name: v4, labels: {version: v4}}")
    msgs = run(analyze_subset_workloads, dr)
    assert texts(msgs) == [
        "The Subset v4 defined in the DestinationRule does not select any pods. Which may lead "
        "to 503 UH (NoHealthyUpstream)."
    ]
    assert msgs[0].path == "spec.subsets[1].name"
    assert run(analyze_subset_workloads, SERVICES) == []


# --- IST0130 / IST0131 for TCP and TLS -------------------------------------------------------


def l4_vs(section: str, matches: list[str]) -> str:
    rules = "\n".join(
        f"  - {m}route: [{{destination: {{host: reviews, port: {{number: 9080}}}}}}]"
        for m in matches
    )
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: l4, namespace: default}}
spec:
  hosts: [reviews]
  {section}:
{rules}
"""


def test_tcp_rules_after_a_rule_without_match_are_ist0130() -> None:
    msgs = run(
        analyze_unreachable_rules, SERVICES, l4_vs("tcp", ["", "match: [{port: 9080}]\n    "])
    )
    assert texts(msgs) == [
        "VirtualService rule #1 not used (route without matches defined before)."
    ]
    assert msgs[0].path == "spec.tcp[1].match[0]"
    ok = run(analyze_unreachable_rules, SERVICES, l4_vs("tcp", ["match: [{port: 9080}]\n    ", ""]))
    assert ok == []


def test_duplicate_tls_match_is_ist0131_and_ist0130() -> None:
    sni = "match: [{sniHosts: [reviews], port: 9080}]\n    "
    msgs = run(analyze_unreachable_rules, SERVICES, l4_vs("tls", [sni, sni]))
    assert sorted(texts(msgs)) == [
        "VirtualService rule #1 match #0 is not used (duplicate/overlapping match in rule #0).",
        "VirtualService rule #1 not used (all matches used by prior rules).",
    ]
    other = "match: [{sniHosts: [reviews], port: 9443}]\n    "
    assert run(analyze_unreachable_rules, SERVICES, l4_vs("tls", [sni, other])) == []


# --- lenient pods, suppression ---------------------------------------------------------------

POLICY = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  action: ALLOW
"""


def test_pods_are_read_as_kubernetes_reads_them() -> None:
    nulls = pod(containers="[{name: app, image: x, args: null, env: null}]")
    assert run(analyze_authorization_workloads, nulls, POLICY) == []
    unknown = pod(containers="[{name: app, image: x, someFutureField: 1}]")
    assert run(analyze_authorization_workloads, unknown, POLICY) == []
    other = pod().replace("app: web", "app: other")
    assert codes(run(analyze_authorization_workloads, other, POLICY)) == ["IST0127"]


def test_suppress_by_code_or_name_and_wildcard_resource() -> None:
    msgs = analyze(inputs(INJECTED_NS, pod()), namespace=None)
    assert "IST0103" in codes(msgs)
    for rule in ("IST0103=Pod shop/web-1", "PodMissingProxy=Pod *.shop", "IST0103=Pod *"):
        assert "IST0103" not in codes(suppress(msgs, [Suppression.parse(rule)])), rule
    assert "IST0103" in codes(suppress(msgs, [Suppression.parse("IST0103=Pod other/*")]))
    annotated = pod(annotations='{galley.istio.io/analyze-suppress: "IST0103"}')
    assert "IST0103" not in codes(analyze(inputs(INJECTED_NS, annotated), namespace=None))


def test_suppression_needs_code_and_resource() -> None:
    for bad in ("IST0102", "=Namespace x", "IST0102="):
        try:
            Suppression.parse(bad)
        except ValueError as e:
            assert "CODE=RESOURCE" in str(e)
        else:
            raise AssertionError(bad)
