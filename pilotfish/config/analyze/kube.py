"""Analyzers of the Kubernetes-shaped objects Pilotfish runs: pods, Deployments and the
Services in front of them, Sidecars in namespaces that run no sidecars.

- IST0103: a pod the runtime reports running in a namespace enabled for injection (and not
  opted out with ``sidecar.istio.io/inject: "false"``) that runs without the proxy.
- IST0116: a Deployment selected by several Services that give one port different
  protocols (from the port's ``appProtocol`` or name, as Istio reads them).
- IST0137: a Deployment selected by several Services that reach the same ``targetPort``
  through different ports.
- IST0144: a pod or Deployment that runs as UID 1337 (pod or container ``securityContext``),
  the proxy's UID in Istio.
- IST0167: a Sidecar in a namespace labelled ``istio.io/dataplane-mode: ambient``, or whose
  selector picks pods labelled so: those workloads run no sidecar, so it has no effect.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from pilotfish.api.core import Service
from pilotfish.api.networking import Sidecar
from pilotfish.api.workloads import Deployment, Pod
from pilotfish.config.analyze import messages as m
from pilotfish.config.analyze.context import AnalysisContext, Entry
from pilotfish.config.analyze.messages import Message
from pilotfish.config.analyze.names import labels_match

__all__ = [
    "analyze_application_uid",
    "analyze_deployment_services",
    "analyze_missing_proxy",
    "analyze_sidecar_ambient",
    "port_protocol",
]

INJECTION_LABEL = "istio-injection"
REVISION_LABEL = "istio.io/rev"
INJECT_OVERRIDE = "sidecar.istio.io/inject"
SIDECAR_STATUS = "sidecar.istio.io/status"
PROXY_CONTAINER = "istio-proxy"
PROXY_UID = 1337
AMBIENT_LABEL = "istio.io/dataplane-mode"

_NAMED = {
    "http": "HTTP",
    "http2": "HTTP2",
    "h2c": "HTTP2",
    "https": "HTTPS",
    "grpc": "GRPC",
    "grpc-web": "GRPC-Web",
    "tcp": "TCP",
    "tls": "TLS",
    "udp": "UDP",
    "mongo": "Mongo",
    "mysql": "MySQL",
    "redis": "Redis",
}


def port_protocol(name: str | None, app_protocol: str | None, protocol: str | None) -> str:
    """Istio's protocol of a Service port: ``appProtocol``, else the name's prefix, else the
    Kubernetes protocol (TCP unless UDP)."""
    if (protocol or "TCP").upper() == "UDP":
        return "UDP"
    if app_protocol:
        known = _NAMED.get(app_protocol.lower().rsplit("/", 1)[-1])
        if known:
            return known
    n = (name or "").lower()
    if n.startswith("grpc-web"):
        return "GRPC-Web"
    return _NAMED.get(n.split("-", 1)[0], "TCP")


def _namespace_injected(ctx: AnalysisContext, namespace: str) -> bool:
    labels = ctx.namespace_labels.get(namespace, {})
    return labels.get(INJECTION_LABEL) == "enabled" or bool(labels.get(REVISION_LABEL))


def analyze_missing_proxy(ctx: AnalysisContext) -> Iterator[Message]:
    """IST0103 for running pods of injected namespaces that run without the proxy."""
    for e, pod in ctx.of_kind("Pod", Pod):
        if pod.status is None or ctx.is_system_namespace(e.namespace):
            continue  # a pod written in a file is injected when it starts
        if not _namespace_injected(ctx, e.namespace) or pod.spec.hostNetwork:
            continue
        meta = pod.metadata
        override = meta.labels.get(INJECT_OVERRIDE, meta.annotations.get(INJECT_OVERRIDE, ""))
        if override.lower() == "false":
            continue
        if SIDECAR_STATUS in meta.annotations:
            continue
        if any(c.name == PROXY_CONTAINER for c in pod.spec.containers):
            continue
        yield e.message(m.POD_MISSING_PROXY, e.name, path="metadata.name")


def _services_selecting(
    ctx: AnalysisContext, namespace: str, labels: Mapping[str, str]
) -> list[tuple[Entry, Service]]:
    return [
        (se, svc)
        for se, svc in ctx.of_kind("Service", Service)
        if se.namespace == namespace
        and svc.spec.selector
        and labels_match(svc.spec.selector, labels)
    ]


def _target_text(target: object, port: int) -> str:
    return str(port) if target in (None, "") else str(target)


def analyze_deployment_services(ctx: AnalysisContext) -> Iterator[Message]:
    """IST0116 and IST0137 for Deployments behind several Services."""
    for e, dep in ctx.of_kind("Deployment", Deployment):
        if ctx.is_system_namespace(e.namespace):
            continue
        labels = dep.spec.template.metadata.labels
        services = _services_selecting(ctx, e.namespace, labels)
        if len(services) < 2:
            continue
        protocols: dict[int, dict[str, list[str]]] = {}
        targets: dict[str, dict[int, list[str]]] = {}
        for se, svc in services:
            for p in svc.spec.ports:
                proto = port_protocol(p.name, p.appProtocol, p.protocol)
                protocols.setdefault(p.port, {}).setdefault(proto, []).append(se.name)
                target = _target_text(p.targetPort, p.port)
                targets.setdefault(target, {}).setdefault(p.port, []).append(se.name)
        for port, by_proto in sorted(protocols.items()):
            if len(by_proto) < 2:
                continue
            names = sorted({n for ns in by_proto.values() for n in ns})
            yield e.message(
                m.DEPLOYMENT_ASSOCIATED_TO_MULTIPLE_SERVICES,
                e.name,
                port,
                "[" + " ".join(names) + "]",
                path="spec.template.metadata.labels",
            )
        for target, by_port in sorted(targets.items()):
            if len(by_port) < 2:
                continue
            names = sorted({n for ns in by_port.values() for n in ns})
            yield e.message(
                m.DEPLOYMENT_CONFLICTING_PORTS,
                e.name,
                "[" + " ".join(names) + "]",
                target,
                "[" + " ".join(str(p) for p in sorted(by_port)) + "]",
                path="spec.template.metadata.labels",
            )


def _runs_as_proxy(spec: Any) -> str | None:
    """The field path (below the pod spec) that sets UID 1337, or None."""
    sc = spec.securityContext
    if sc is not None and sc.runAsUser == PROXY_UID:
        return "securityContext.runAsUser"
    for i, c in enumerate(spec.containers):
        if c.name == PROXY_CONTAINER:
            continue
        if c.securityContext is not None and c.securityContext.runAsUser == PROXY_UID:
            return f"containers[{i}].securityContext.runAsUser"
    return None


def analyze_application_uid(ctx: AnalysisContext) -> Iterator[Message]:
    """IST0144 for pods and Deployments that run as UID 1337."""
    for e, pod in ctx.of_kind("Pod", Pod):
        where = _runs_as_proxy(pod.spec)
        if where:
            yield e.message(m.INVALID_APPLICATION_UID, path=f"spec.{where}")
    for e, dep in ctx.of_kind("Deployment", Deployment):
        where = _runs_as_proxy(dep.spec.template.spec)
        if where:
            yield e.message(m.INVALID_APPLICATION_UID, path=f"spec.template.spec.{where}")


def analyze_sidecar_ambient(ctx: AnalysisContext) -> Iterator[Message]:
    """IST0167 for Sidecars that apply to ambient workloads only."""
    for e, sc in ctx.of_kind("Sidecar", Sidecar):
        ns_labels = ctx.namespace_labels.get(e.namespace, {})
        selector = sc.spec.workloadSelector.labels if sc.spec.workloadSelector else {}
        if not selector:
            if ns_labels.get(AMBIENT_LABEL) == "ambient":
                yield e.message(
                    m.INEFFECTIVE_POLICY,
                    "namespace is in ambient mode, the policy has no impact",
                    path="metadata.namespace",
                )
            continue
        for w in ctx.workloads_selected(selector, e.namespace):
            if w.labels.get(AMBIENT_LABEL) == "ambient" or (
                ns_labels.get(AMBIENT_LABEL) == "ambient" and AMBIENT_LABEL not in w.labels
            ):
                yield e.message(
                    m.INEFFECTIVE_POLICY,
                    "selected workload is in ambient mode, the policy has no impact",
                    path="spec.workloadSelector",
                )
                break
