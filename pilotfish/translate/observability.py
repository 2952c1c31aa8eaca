"""Where each proxy's telemetry goes in its listeners: the glue between the PushContext (mesh
config, Telemetry resources) and the Envoy config of :mod:`.telemetry`.

- Client side (``reporter=source``): every outbound HTTP connection manager (sidecar outbound
  chains, explicit-mode outbound, the gateway's listeners) and outbound ``tcp_proxy``.
- Server side (``reporter=destination``): every inbound HTTP connection manager, with the peer
  header edge filter first, and inbound ``tcp_proxy``.

Everything a proxy's workload contributes comes from Envoy's environment, so the result depends
only on the Telemetry resources that apply (:func:`telemetry_key`), which is what listener
memoization keys on.
"""

from __future__ import annotations

from collections.abc import Hashable

from envoy.config.accesslog.v3 import accesslog_pb2 as al
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from pilotfish.api.hosts import resolve_host
from pilotfish.api.meshconfig import ExtensionProvider
from pilotfish.api.profiles import INGRESS_GATEWAY
from pilotfish.model.proxy import Proxy
from pilotfish.model.push_context import PushContext
from pilotfish.model.telemetry import ProxyTelemetry, proxy_telemetry
from pilotfish.translate import telemetry as T
from pilotfish.translate.common import ClusterKey
from pilotfish.translate.telemetry import HcmTelemetry

__all__ = [
    "client_http",
    "client_tcp_logs",
    "server_http",
    "server_tcp_logs",
    "telemetry_key",
    "telemetry_of",
]

#: Gateway names a gateway proxy answers to in ``targetRef(s)`` (Istio's ingress gateway).
GATEWAY_REF_NAMES = (INGRESS_GATEWAY,)


def _labels_key(proxy: Proxy) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(proxy.labels.items()))


def telemetry_of(push: PushContext, proxy: Proxy) -> ProxyTelemetry:
    """The telemetry ``proxy`` produces (memoized per namespace and labels)."""
    gateways = GATEWAY_REF_NAMES if proxy.is_router else ()

    def compute() -> ProxyTelemetry:
        return proxy_telemetry(
            push.telemetries, push.mesh_config, proxy.namespace, proxy.labels, gateways
        )

    return push.memo(("telemetry", proxy.namespace, _labels_key(proxy), proxy.is_router), compute)


def telemetry_key(push: PushContext, proxy: Proxy) -> Hashable:
    """What a listener built for ``proxy`` depends on, telemetry-wise (a hashable value)."""
    key = ("telemetry_key", proxy.namespace, _labels_key(proxy), proxy.is_router)
    return push.memo(key, lambda: repr(telemetry_of(push, proxy)))


def _tracing(
    push: PushContext, proxy: Proxy, mode: str
) -> hcm_pb2.HttpConnectionManager.Tracing | None:
    spec = telemetry_of(push, proxy).tracing
    if spec is None or mode not in spec.modes or spec.disable_span_reporting:
        return None
    found = _collector(push, spec.provider)
    if found is None:
        return None
    cluster, authority = found
    service_name = proxy.node.cluster  # Istio's span service: app.namespace
    return T.tracing_config(spec, cluster, authority, service_name)


def _collector(push: PushContext, provider: ExtensionProvider) -> tuple[str, str] | None:
    """The outbound cluster and authority of a tracing provider's service."""
    sub = provider.zipkin or provider.opentelemetry
    if sub is None:
        return None
    svc = None
    for host in _service_hosts(sub.service, push.settings.domain_suffix):
        svc = push.service(host)
        if svc is not None:
            break
    if svc is None or not any(p.port == sub.port for p in svc.ports):
        return None
    return ClusterKey.outbound(sub.port, "", svc.hostname).name, f"{sub.service}:{sub.port}"


def _service_hosts(service: str, domain_suffix: str) -> list[str]:
    """Hosts a provider's ``service`` may name, as Istio reads it: an FQDN, ``name.namespace``
    or a bare name (in the root namespace)."""
    hosts = [service]
    if service.count(".") == 1:
        hosts.append(f"{service}.svc.{domain_suffix}")
    if "." not in service:
        hosts.append(resolve_host(service, "istio-system", domain_suffix))
    return hosts


def client_http(push: PushContext, proxy: Proxy, grpc: bool = False) -> HcmTelemetry:
    """An outbound connection manager's telemetry; ``grpc``: it carries gRPC services."""
    t = telemetry_of(push, proxy)
    logs: list[al.AccessLog] = []
    metrics = t.metrics_on("CLIENT")
    if metrics:
        overrides = [o for o in t.overrides if o.mode == "CLIENT"]
        stats = T.http_metrics_log(T.client_http_tags(), overrides, grpc)
        if stats is not None:
            logs.append(stats)
    logs += T.access_logs(t.access_logs, "CLIENT")
    return HcmTelemetry(
        tuple(logs),
        _tracing(push, proxy, "CLIENT"),
        request_edge=metrics,
        grpc_messages=metrics and grpc,
    )


def _served(proxy: Proxy, target: int) -> tuple[str, str, str]:
    for inst in proxy.instances:
        if inst.target_port == target:
            svc = inst.service
            return svc.hostname, svc.name, svc.namespace
    return "", "", ""


def server_http(
    push: PushContext, proxy: Proxy, target: int, mtls: bool, grpc: bool = False
) -> HcmTelemetry:
    """An inbound connection manager's telemetry; ``mtls``: its chain is mutual TLS;
    ``grpc``: the port serves gRPC."""
    t = telemetry_of(push, proxy)
    logs: list[al.AccessLog] = []
    metrics = t.metrics_on("SERVER")
    if metrics:
        overrides = [o for o in t.overrides if o.mode == "SERVER"]
        tags = T.server_http_tags(_served(proxy, target), mtls)
        stats = T.http_metrics_log(tags, overrides, grpc)
        if stats is not None:
            logs.append(stats)
    logs += T.access_logs(t.access_logs, "SERVER")
    return HcmTelemetry(
        tuple(logs),
        _tracing(push, proxy, "SERVER"),
        peer_edge=True,
        grpc_messages=metrics and grpc,
    )


def client_tcp_logs(push: PushContext, proxy: Proxy) -> list[al.AccessLog]:
    t = telemetry_of(push, proxy)
    if not t.metrics_on("CLIENT"):
        return []
    overrides = [o for o in t.overrides if o.mode == "CLIENT"]
    return T.tcp_metrics_logs(T.tcp_tags(T.client_http_tags()), overrides)


def server_tcp_logs(push: PushContext, proxy: Proxy, target: int, mtls: bool) -> list[al.AccessLog]:
    t = telemetry_of(push, proxy)
    if not t.metrics_on("SERVER"):
        return []
    overrides = [o for o in t.overrides if o.mode == "SERVER"]
    tags = T.tcp_tags(T.server_http_tags(_served(proxy, target), mtls))
    return T.tcp_metrics_logs(tags, overrides)
