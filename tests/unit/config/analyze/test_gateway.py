"""Gateway analyzers: selected workloads and ports, credentials, conflicting servers."""

from __future__ import annotations

from pilotfish.config.analyze import AnalysisSettings, Workload
from pilotfish.config.analyze.gateway import (
    analyze_conflicting_gateways,
    analyze_gateway_credentials,
    analyze_gateway_workloads,
)
from tests.unit.config.analyze._util import codes, run, texts


def gateway(
    name: str = "web",
    selector: str = "{istio: ingressgateway}",
    port: int = 80,
    hosts: str = '["*"]',
    tls: str = "",
    namespace: str = "default",
) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  selector: {selector}
  servers:
  - port: {{number: {port}, name: p{port}, protocol: {"HTTPS" if tls else "HTTP"}}}
    hosts: {hosts}
{tls}
"""


# --- selector and ports ---------------------------------------------------------------------


def test_gateway_for_the_local_ingress_gateway_on_any_port_is_clean() -> None:
    for port in (80, 443, 8080, 9000):
        assert run(analyze_gateway_workloads, gateway(port=port)) == [], port


def test_selector_matching_nothing_is_ist0101_selector() -> None:
    msgs = run(analyze_gateway_workloads, gateway(selector="{istio: egressgateway}"))
    assert texts(msgs) == ['Referenced selector not found: "istio=egressgateway"']
    assert msgs[0].path == "spec.selector"


def test_without_builtin_gateway_the_local_selector_matches_nothing() -> None:
    settings = AnalysisSettings(builtin_workloads=())
    assert codes(run(analyze_gateway_workloads, gateway(), settings=settings)) == ["IST0101"]


def test_port_a_builtin_gateway_does_not_expose_is_ist0162() -> None:
    fixed = Workload("Gateway", "istio-system", "gw", {"istio": "ingressgateway"}, (80, 443))
    settings = AnalysisSettings(builtin_workloads=(fixed,))
    assert run(analyze_gateway_workloads, gateway(port=443), settings=settings) == []
    msgs = run(analyze_gateway_workloads, gateway(port=9000), settings=settings)
    assert codes(msgs) == ["IST0162"]
    assert "(port 9000)" in msgs[0].text and "istio=ingressgateway" in msgs[0].text


def test_gateway_workload_from_a_deployment_uses_its_service_ports() -> None:
    workload = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: my-gw, namespace: edge}
spec:
  selector: {matchLabels: {app: my-gw}}
  template:
    metadata: {labels: {app: my-gw}}
    spec:
      containers: [{name: proxy, image: proxy}]
---
apiVersion: v1
kind: Service
metadata: {name: my-gw, namespace: edge}
spec:
  selector: {app: my-gw}
  ports: [{name: http, port: 8081}]
"""
    ok = gateway(selector="{app: my-gw}", port=8081)
    assert run(analyze_gateway_workloads, workload, ok) == []
    bad = gateway(selector="{app: my-gw}", port=8082)
    assert codes(run(analyze_gateway_workloads, workload, bad)) == ["IST0162"]


# --- credentials ----------------------------------------------------------------------------

TLS = "    tls: {mode: SIMPLE, credentialName: shop-cert}"
SECRET = """
apiVersion: v1
kind: Secret
metadata: {{name: shop-cert, namespace: {ns}}}
type: kubernetes.io/tls
stringData: {{tls.crt: x, tls.key: y}}
"""


def test_credential_in_the_gateway_workload_namespace_is_clean() -> None:
    assert (
        run(
            analyze_gateway_credentials,
            gateway(port=443, tls=TLS),
            SECRET.format(ns="istio-system"),
        )
        == []
    )


def test_missing_credential_is_ist0101_credential_name() -> None:
    msgs = run(analyze_gateway_credentials, gateway(port=443, tls=TLS), SECRET.format(ns="default"))
    assert texts(msgs) == ['Referenced credentialName not found: "shop-cert"']
    assert msgs[0].path == "spec.servers[0].tls.credentialName"


# --- conflicts ------------------------------------------------------------------------------


def test_two_gateways_same_workload_port_and_host_conflict_ist0145() -> None:
    a = gateway(name="a", hosts="[shop.example.com]")
    b = gateway(name="b", hosts='["*.example.com"]', namespace="istio-system")
    msgs = run(analyze_conflicting_gateways, a, b)
    assert codes(msgs) == ["IST0145", "IST0145"]
    first = next(m for m in msgs if m.resource.name == "a")
    assert first.text == (
        "Conflict with gateways istio-system/b (workload selector istio=ingressgateway, "
        "port 80, hosts shop.example.com)."
    )


def test_gateways_on_different_ports_or_hosts_do_not_conflict() -> None:
    a = gateway(name="a", hosts="[shop.example.com]")
    assert run(analyze_conflicting_gateways, a, gateway(name="b", port=8080)) == []
    other_host = gateway(name="c", hosts="[blog.example.com]")
    assert run(analyze_conflicting_gateways, a, other_host) == []
    other_workload = gateway(name="d", selector="{app: other}")
    assert run(analyze_conflicting_gateways, a, other_workload) == []
