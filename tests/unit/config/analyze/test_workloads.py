"""Namespace injection, Service port names, Sidecar and Telemetry selectors and providers."""

from __future__ import annotations

from pilotfish.config.analyze.workloads import (
    analyze_injection,
    analyze_port_names,
    analyze_sidecar_selectors,
    analyze_telemetry_providers,
    analyze_telemetry_selectors,
    protocol_named,
)
from tests.unit.config.analyze._util import codes, run, texts


def deployment(namespace: str = "default", labels: str = "{app: reviews}") -> str:
    return f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: reviews-v1, namespace: {namespace}}}
spec:
  selector: {{matchLabels: {labels}}}
  template:
    metadata: {{labels: {labels}}}
    spec:
      containers: [{{name: app, image: app}}]
"""


def namespace(name: str, labels: str = "{}") -> str:
    return f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}, labels: {labels}}}\n"


# --- injection ------------------------------------------------------------------------------


def test_namespace_with_workloads_and_no_injection_label_is_ist0102() -> None:
    msgs = run(analyze_injection, namespace("shop"), deployment("shop"))
    assert codes(msgs) == ["IST0102"]
    assert str(msgs[0].resource) == "Namespace shop"
    assert "'pilotfish label namespace shop istio-injection=enabled'" in msgs[0].text
    assert msgs[0].level.label == "Info"


def test_labelled_empty_or_system_namespaces_are_clean() -> None:
    for labels in (
        "{istio-injection: enabled}",
        "{istio-injection: disabled}",
        "{istio.io/rev: x}",
    ):
        assert run(analyze_injection, namespace("shop", labels), deployment("shop")) == [], labels
    assert run(analyze_injection, namespace("empty")) == []
    assert run(analyze_injection, deployment("kube-system")) == []


def test_workload_namespace_without_namespace_object_is_reported_too() -> None:
    msgs = run(analyze_injection, deployment("shop"))
    assert [str(m.resource) for m in msgs] == ["Namespace shop"]


# --- port names -----------------------------------------------------------------------------


def service(ports: str, namespace: str = "default") -> str:
    return f"""
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: {namespace}}}
spec:
  ports: {ports}
"""


def test_named_ports_are_clean() -> None:
    ports = (
        "[{name: http, port: 80}, {name: grpc-api, port: 90}, {name: grpc-web, port: 91},"
        " {name: db, port: 5432, appProtocol: tcp}, {name: tls-x, port: 443}]"
    )
    assert run(analyze_port_names, service(ports)) == []


def test_port_without_protocol_name_is_ist0118() -> None:
    msgs = run(analyze_port_names, service("[{name: web, port: 8080, targetPort: 9080}]"))
    assert texts(msgs) == [
        "Port name web (port: 8080, targetPort: 9080) doesn't follow the naming convention of "
        "Istio port."
    ]
    assert msgs[0].path == "spec.ports[0]"


def test_port_names_in_system_namespaces_are_not_checked() -> None:
    assert run(analyze_port_names, service("[{name: web, port: 80}]", "istio-system")) == []


def test_protocol_named_follows_istio_rules() -> None:
    assert protocol_named("http2-x", None, None)
    assert protocol_named(None, "kubernetes.io/h2c", None)
    assert protocol_named("dns", None, "UDP")
    assert not protocol_named("web", None, None)
    assert not protocol_named(None, None, None)


# --- sidecars and telemetry -----------------------------------------------------------------


def sidecar(name: str, selector: str = "") -> str:
    sel = f"  workloadSelector: {{labels: {selector}}}\n" if selector else ""
    return f"""
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: {name}, namespace: default}}
spec:
{sel}  egress: [{{hosts: ["./*"]}}]
"""


def test_two_sidecars_without_selector_are_ist0111() -> None:
    msgs = run(analyze_sidecar_selectors, sidecar("a"), sidecar("b"))
    assert codes(msgs) == ["IST0111", "IST0111"]
    assert msgs[0].text.startswith('The Sidecars [a b] in namespace "default" have no workload')


def test_two_sidecars_selecting_one_workload_are_ist0110() -> None:
    msgs = run(
        analyze_sidecar_selectors,
        deployment(),
        sidecar("a", "{app: reviews}"),
        sidecar("b", "{app: reviews}"),
    )
    assert codes(msgs) == ["IST0110", "IST0110"]
    assert 'select the same workload pod "reviews-v1"' in msgs[0].text


def test_one_default_and_one_selecting_sidecar_are_clean() -> None:
    assert (
        run(analyze_sidecar_selectors, deployment(), sidecar("a"), sidecar("b", "{app: x}")) == []
    )


def telemetry(name: str, spec: str, ns: str = "default") -> str:
    return f"""
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {{name: {name}, namespace: {ns}}}
spec:
{spec}
"""


def test_two_namespace_wide_telemetries_are_ist0160() -> None:
    spec = "  accessLogging: [{providers: [{name: envoy}]}]"
    msgs = run(analyze_telemetry_selectors, telemetry("a", spec), telemetry("b", spec))
    assert codes(msgs) == ["IST0160", "IST0160"]
    assert run(analyze_telemetry_selectors, telemetry("a", spec)) == []


def test_access_logging_without_provider_is_ist0157() -> None:
    msgs = run(analyze_telemetry_providers, telemetry("logs", "  accessLogging: [{}]"))
    assert texts(msgs) == [
        'The Telemetry logs in namespace "default" with empty providers will be ignored.'
    ]
    ok = "  accessLogging: [{providers: [{name: envoy}]}, {disabled: true}]"
    assert run(analyze_telemetry_providers, telemetry("logs", ok)) == []
