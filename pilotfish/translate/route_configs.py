"""Route configurations (RDS): virtual hosts per service for sidecars, per host for gateways.

Sidecar (REDIRECT): one route config per HTTP port, named by the port (``"9080"``), with one
virtual host per service its Sidecar scope routes on that port
(``reviews.default.svc.cluster.local:9080``)
and the domains Istio gives it: the short name (same namespace only), ``name.ns``,
``name.ns.svc``, the FQDN and the VIP, each with and without ``:port``; then ``allow_any``
(``*`` -> PassthroughCluster, or the Sidecar's ``egressProxy``) under ALLOW_ANY, or
``block_all`` (502) under REGISTRY_ONLY.

Sidecar (NONE, explicit): one route config with every service's virtual hosts for all its
HTTP ports; ``:port`` domains tell ports apart and the bare names go to the service's first
HTTP port.

Router: ``http.<bind port>`` with one virtual host per host served on that port
(``bookinfo.com:80``, domains ``bookinfo.com`` and ``bookinfo.com:*``), holding the routes of
every VirtualService bound to the gateway for that host.

Domains must be unique inside a route config (Envoy rejects duplicates): later duplicates
are dropped, so the first service (by hostname) keeps a contested name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from envoy.config.core.v3 import config_source_pb2 as cs
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from google.protobuf.message import Message
from google.protobuf.wrappers_pb2 import BoolValue

from pilotfish.api.hosts import MESH_GATEWAY, host_matches, specificity, split_server_host
from pilotfish.api.mesh import visible
from pilotfish.api.networking import Server
from pilotfish.api.vhost_directory import RouteConfigHosts, vhost_resource_name
from pilotfish.model.config import GatewayConfig
from pilotfish.model.proxy import Proxy
from pilotfish.model.push_context import PushContext
from pilotfish.model.sidecar import SidecarScope
from pilotfish.registry.types import Service, ServicePort
from pilotfish.translate.common import (
    PASSTHROUGH_CLUSTER,
    ClusterKey,
    duration,
)
from pilotfish.translate.dependencies import route_rule_revisions
from pilotfish.translate.routes import RouteContext, default_route, http_routes
from pilotfish.translate.telemetry import peer_headers_to_add


def service_domains(svc: Service, port: int, namespace: str, *, bare: bool = True) -> list[str]:
    """Istio's domains of a service's virtual host as seen from ``namespace``."""
    names = [svc.hostname]
    if svc.source_kind == "Service":
        short, ns = svc.name, svc.namespace
        if ns == namespace:
            names.append(short)
        names += [f"{short}.{ns}", f"{short}.{ns}.svc"]
    if svc.vip:
        names.append(svc.vip)
    out: list[str] = []
    for n in names:
        if bare:
            out.append(n)
        out.append(f"{n}:{port}")
    return out


def _uses_source_labels(push: PushContext) -> bool:
    def compute() -> bool:
        return any(
            any(m.sourceLabels for r in vs.http for m in r.match)
            or any(m.sourceLabels for r in vs.tcp for m in r.match)
            or any(m.sourceLabels for r in vs.tls for m in r.match)
            for vs in push.virtual_services
        )

    return push.memo(("uses_source_labels",), compute)


def labels_key(push: PushContext, labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """The part of a proxy's labels that can change its routes and listeners (none unless a
    VirtualService matches on ``sourceLabels``): lets proxies share route configs."""
    return tuple(sorted(labels.items())) if _uses_source_labels(push) else ()


def _service_routes(ctx: RouteContext, svc: Service) -> list[rc.Route]:
    vs = ctx.push.mesh_virtual_service(svc.hostname, ctx.namespace)
    if vs is not None:
        return http_routes(ctx, vs)
    return [default_route(ctx, svc, ctx.port)]


def _add_vhost(
    out: list[rc.VirtualHost],
    seen: set[str],
    name: str,
    domains: list[str],
    routes: list[rc.Route],
    in_mesh: bool = True,
) -> None:
    """Add a virtual host for the domains not taken yet. Requests to in-mesh services carry
    the caller's workload (the peer headers); those leaving the mesh do not."""
    fresh = [d for d in domains if d not in seen]
    if not fresh:
        return
    seen.update(fresh)
    vhost = rc.VirtualHost(name=name, domains=fresh, routes=routes)
    if in_mesh:
        vhost.request_headers_to_add.extend(peer_headers_to_add())
    out.append(vhost)


def egress_proxy_cluster(scope: SidecarScope) -> str | None:
    """The cluster of the Sidecar's ``egressProxy`` under ALLOW_ANY, Istio's
    ``outbound|PORT|SUBSET|HOST`` of the destination as written (it exists when the Sidecar
    imports that service, as in Istio); None: unknown destinations pass through."""
    dest = scope.egress_proxy
    if dest is None:
        return None
    host, port, subset = dest
    return ClusterKey.outbound(port, subset, host).name


def _fallback_vhost(registry_only: bool, egress: str | None = None) -> rc.VirtualHost:
    """``block_all`` (502) under REGISTRY_ONLY, else ``allow_any`` to PassthroughCluster or
    to the egress proxy's cluster (``egress``)."""
    if registry_only:
        return rc.VirtualHost(
            name="block_all",
            domains=["*"],
            routes=[
                rc.Route(
                    name="block_all",
                    match=rc.RouteMatch(prefix="/"),
                    direct_response=rc.DirectResponseAction(status=502),
                )
            ],
        )
    return rc.VirtualHost(
        name="allow_any",
        domains=["*"],
        routes=[
            rc.Route(
                name="allow_any",
                match=rc.RouteMatch(prefix="/"),
                route=rc.RouteAction(cluster=egress or PASSTHROUGH_CLUSTER, timeout=duration(0)),
            )
        ],
    )


def _http_port(svc: Service, port: int) -> ServicePort | None:
    sp = svc.port(port)
    return sp if sp is not None and sp.protocol.is_http else None


def route_inputs(push: PushContext) -> object:
    """What of the config a sidecar's route configuration depends on besides its view: the
    config but workloads and DestinationRules (``route_epoch``), and the DestinationRules
    routes can read (``dependencies.route_rule_revisions``)."""
    return (push.route_epoch, route_rule_revisions(push))


def _sidecar_view_key(push: PushContext, proxy: Proxy, port: int) -> tuple[object, ...]:
    return (proxy.sidecar_scope(push).key, port, labels_key(push, proxy.labels))


def _sidecar_virtual_hosts(push: PushContext, proxy: Proxy, port: int) -> list[rc.VirtualHost]:
    """The virtual hosts of the route config ``"PORT"`` of a REDIRECT-mode sidecar, the
    fallback (``allow_any`` or ``block_all``) last; one list per view."""
    ns = proxy.namespace
    scope = proxy.sidecar_scope(push)

    def compute() -> list[rc.VirtualHost]:
        ctx = RouteContext(push, ns, MESH_GATEWAY, port, dict(proxy.labels))
        vhosts: list[rc.VirtualHost] = []
        seen: set[str] = set()
        for svc in scope.services_on_port(port):
            if _http_port(svc, port) is None:
                continue
            _add_vhost(
                vhosts,
                seen,
                f"{svc.hostname}:{port}",
                service_domains(svc, port, ns),
                _service_routes(ctx, svc),
                in_mesh=not svc.mesh_external,
            )
        vhosts.append(_fallback_vhost(scope.registry_only, egress_proxy_cluster(scope)))
        return vhosts

    # Routes depend on config and services, not on endpoints: reused while only workloads
    # change (a connection storm rebuilds no route configuration), and across DestinationRule
    # changes that cannot change routes (a subset added).
    key = ("sidecar_vhosts", *_sidecar_view_key(push, proxy, port))
    return push.reuse(key, route_inputs(push), compute)


def sidecar_route_config(
    push: PushContext, proxy: Proxy, port: int
) -> route_pb2.RouteConfiguration:
    """The route config ``"PORT"`` of a REDIRECT-mode sidecar: the services its Sidecar
    scope routes on that port."""

    def compute() -> route_pb2.RouteConfiguration:
        return route_pb2.RouteConfiguration(
            name=str(port),
            virtual_hosts=_sidecar_virtual_hosts(push, proxy, port),
            validate_clusters=BoolValue(value=False),
        )

    # One message per view, serialized once for the proxies that share it.
    key = ("sidecar_rds", *_sidecar_view_key(push, proxy, port))
    return push.reuse(key, route_inputs(push), compute)


# ---- VHDS -------------------------------------------------------------------------------------


def vhds_enabled(push: PushContext, proxy: Proxy) -> bool:
    """Whether ``proxy`` gets its outbound virtual hosts over VHDS (mesh config
    ``virtualHostDiscovery``): sidecars on a Delta stream only (Envoy has VHDS on Delta
    alone); gateways keep whole route configs (a few hosts each). With ``onDemandClusters``
    their virtual hosts are on demand too (:func:`sidecar_on_demand_route_config`)."""
    return bool(
        push.mesh_config.virtualHostDiscovery and proxy.node.delta_xds and not proxy.is_router
    )


def sidecar_vhds_route_config(
    push: PushContext, proxy: Proxy, port: int
) -> tuple[route_pb2.RouteConfiguration, dict[str, rc.VirtualHost]]:
    """The VHDS form of :func:`sidecar_route_config`: the route config carries ``vhds`` (ADS)
    and only the fallback virtual host (``*``); each service's virtual host is a resource of
    its own, named by :func:`vhost_resource_name`. A VirtualService change changes one
    virtual host, not the route config."""

    def compute() -> tuple[route_pb2.RouteConfiguration, dict[str, rc.VirtualHost]]:
        vhosts = _sidecar_virtual_hosts(push, proxy, port)
        name = str(port)
        return _vhds_config(name, vhosts[-1:]), _vhds_resources(name, vhosts[:-1])

    key = ("sidecar_vhds", *_sidecar_view_key(push, proxy, port))
    return push.reuse(key, route_inputs(push), compute)


def _vhds_resources(route_config: str, vhosts: list[rc.VirtualHost]) -> dict[str, rc.VirtualHost]:
    """The VHDS resources of ``vhosts``, each virtual host named as its resource (see
    :func:`vhost_resource_name`; copies: the whole route config's are shared)."""
    out: dict[str, rc.VirtualHost] = {}
    for vh in vhosts:
        name = vhost_resource_name(route_config, vh.name)
        named = rc.VirtualHost()
        named.CopyFrom(vh)
        named.name = name
        out[name] = named
    return out


def _vhds_config(name: str, inline: list[rc.VirtualHost]) -> route_pb2.RouteConfiguration:
    return route_pb2.RouteConfiguration(
        name=name,
        virtual_hosts=inline,
        validate_clusters=BoolValue(value=False),
        vhds=route_pb2.Vhds(
            config_source=cs.ConfigSource(
                ads=cs.AggregatedConfigSource(), resource_api_version=cs.V3
            )
        ),
    )


def explicit_vhds_route_config(
    push: PushContext, proxy: Proxy, name: str
) -> tuple[route_pb2.RouteConfiguration, dict[str, rc.VirtualHost]]:
    """The VHDS form of :func:`explicit_route_config`: ``block_all`` (REGISTRY_ONLY) stays in
    the route config, each service's virtual host is a resource of its own."""
    scope = proxy.sidecar_scope(push)

    def compute() -> tuple[route_pb2.RouteConfiguration, dict[str, rc.VirtualHost]]:
        vhosts = _explicit_virtual_hosts(push, proxy)
        fallback = scope.registry_only or egress_proxy_cluster(scope) is not None
        split = len(vhosts) - 1 if fallback else len(vhosts)
        return _vhds_config(name, vhosts[split:]), _vhds_resources(name, vhosts[:split])

    key = ("explicit_vhds", scope.key, name, labels_key(push, proxy.labels))
    return push.reuse(key, route_inputs(push), compute)


# ---- On-demand virtual hosts ------------------------------------------------------------------

#: The host of the one virtual host an on-demand route configuration starts with: Envoy serves
#: a route configuration with ``vhds`` only once a VHDS response carried something for it (an
#: empty first response leaves the listener waiting 15 s). ``.invalid`` never resolves.
PLACEHOLDER_HOST = "on-demand.pilotfish.invalid"


@dataclass(frozen=True)
class OnDemandRoutes:
    """A VHDS route configuration whose services' virtual hosts are sent on demand (see
    :mod:`pilotfish.api.vhost_directory`): the configuration (no inline virtual host), every
    VHDS resource (the services' and the placeholder), the names sent only when asked for,
    and how a host resolves to them."""

    config: route_pb2.RouteConfiguration
    vhosts: dict[str, rc.VirtualHost]
    on_demand: frozenset[str]
    hosts: RouteConfigHosts


def _placeholder(route_config: str) -> rc.VirtualHost:
    return rc.VirtualHost(
        name=vhost_resource_name(route_config, "on-demand"),
        domains=[PLACEHOLDER_HOST],
        routes=[
            rc.Route(
                name="on-demand",
                match=rc.RouteMatch(prefix="/"),
                direct_response=rc.DirectResponseAction(status=404),
            )
        ],
    )


def _on_demand_routes(
    name: str, services: list[rc.VirtualHost], fallback: rc.VirtualHost | None
) -> OnDemandRoutes:
    resources = _vhds_resources(name, services)
    placeholder = _placeholder(name)
    return OnDemandRoutes(
        config=_vhds_config(name, []),
        vhosts={**resources, placeholder.name: placeholder},
        on_demand=frozenset(resources),
        hosts=RouteConfigHosts(resources, fallback),
    )


def sidecar_on_demand_route_config(push: PushContext, proxy: Proxy, port: int) -> OnDemandRoutes:
    """:func:`sidecar_vhds_route_config` with every virtual host on demand: the fallback
    (``allow_any``, ``block_all``) is no ``*`` virtual host any more (Envoy would route every
    host it lacks there instead of asking) but what a host no service has gets, one virtual
    host per host asked for."""

    def compute() -> OnDemandRoutes:
        vhosts = _sidecar_virtual_hosts(push, proxy, port)
        return _on_demand_routes(str(port), vhosts[:-1], vhosts[-1])

    key = ("sidecar_vhds_on_demand", *_sidecar_view_key(push, proxy, port))
    return push.reuse(key, route_inputs(push), compute)


def explicit_on_demand_route_config(push: PushContext, proxy: Proxy, name: str) -> OnDemandRoutes:
    """:func:`explicit_vhds_route_config` with every virtual host on demand (``block_all`` or
    the egress proxy's fallback per host asked for; under ALLOW_ANY an unknown host gets 404,
    as without on-demand virtual hosts)."""
    scope = proxy.sidecar_scope(push)

    def compute() -> OnDemandRoutes:
        vhosts = _explicit_virtual_hosts(push, proxy)
        fallback = scope.registry_only or egress_proxy_cluster(scope) is not None
        split = len(vhosts) - 1 if fallback else len(vhosts)
        return _on_demand_routes(name, vhosts[:split], vhosts[split] if fallback else None)

    key = ("explicit_vhds_on_demand", scope.key, name, labels_key(push, proxy.labels))
    return push.reuse(key, route_inputs(push), compute)


def merge_vhds(
    routes: Mapping[str, Message], vhosts: Mapping[str, Message]
) -> dict[str, route_pb2.RouteConfiguration]:
    """Route configs as Envoy holds them once VHDS delivered their virtual hosts (inline ones
    first, then those of VHDS by resource name), for readers that compare with Envoy."""
    by_config: dict[str, list[tuple[str, Message]]] = {}
    for name, vh in vhosts.items():
        by_config.setdefault(name.partition("/")[0], []).append((name, vh))
    out: dict[str, route_pb2.RouteConfiguration] = {}
    for name, config in routes.items():
        assert isinstance(config, route_pb2.RouteConfiguration)
        extra = by_config.get(name)
        if not extra or not config.HasField("vhds"):
            out[name] = config
            continue
        merged = route_pb2.RouteConfiguration()
        merged.CopyFrom(config)
        for _, vh in sorted(extra, key=lambda x: x[0]):
            merged.virtual_hosts.append(vh)
        out[name] = merged
    return out


def sidecar_http_ports(push: PushContext, scope: SidecarScope) -> list[int]:
    """Every HTTP service port a sidecar of ``scope`` routes (one route config each)."""

    def compute() -> list[int]:
        ports = {sp.port for svc in scope.services for sp in svc.ports if sp.protocol.is_http}
        return sorted(p for p in ports if any(_http_port(s, p) for s in scope.services_on_port(p)))

    return push.memo(("sidecar_http_ports", scope.key), compute)


def _explicit_virtual_hosts(push: PushContext, proxy: Proxy) -> list[rc.VirtualHost]:
    ns = proxy.namespace
    scope = proxy.sidecar_scope(push)

    def compute() -> list[rc.VirtualHost]:
        vhosts: list[rc.VirtualHost] = []
        seen: set[str] = set()
        for svc in scope.services:
            http_ports = [
                sp for sp in svc.ports if sp.protocol.is_http and scope.on_port(svc, sp.port)
            ]
            for i, sp in enumerate(http_ports):
                ctx = RouteContext(push, ns, MESH_GATEWAY, sp.port, dict(proxy.labels))
                _add_vhost(
                    vhosts,
                    seen,
                    f"{svc.hostname}:{sp.port}",
                    service_domains(svc, sp.port, ns, bare=(i == 0)),
                    _service_routes(ctx, svc),
                    in_mesh=not svc.mesh_external,
                )
        egress = egress_proxy_cluster(scope)
        if scope.registry_only or egress is not None:
            vhosts.append(_fallback_vhost(scope.registry_only, egress))
        return vhosts

    return push.reuse(
        ("explicit_rds", scope.key, labels_key(push, proxy.labels)), route_inputs(push), compute
    )


def explicit_route_config(
    push: PushContext, proxy: Proxy, name: str
) -> route_pb2.RouteConfiguration:
    """The single route config of a NONE-mode sidecar's outbound listener: the services of
    its Sidecar scope, then ``block_all`` (502) under REGISTRY_ONLY. Under ALLOW_ANY an
    unknown host has no route (404): without capture there is no original destination;
    with the Sidecar's ``egressProxy`` it goes to the egress proxy (``allow_any``)."""
    scope = proxy.sidecar_scope(push)

    def config() -> route_pb2.RouteConfiguration:
        return route_pb2.RouteConfiguration(
            name=name,
            virtual_hosts=_explicit_virtual_hosts(push, proxy),
            validate_clusters=BoolValue(value=False),
        )

    # One message per route name and view: serialized once for the proxies that share it.
    key = ("explicit_rds_config", scope.key, name, labels_key(push, proxy.labels))
    return push.reuse(key, route_inputs(push), config)


# ---- gateways ---------------------------------------------------------------------------------


def gateway_domains(host: str, port: int) -> list[str]:
    """Istio's buildGatewayVirtualHostDomains."""
    if host == "*":
        return ["*"]
    if host.startswith("*"):
        return [host, f"{host}:{port}"]
    return [host, f"{host}:*"]


def _gateway_default_port(svc: Service | None) -> int:
    return svc.ports[0].port if svc is not None and svc.ports else 0


def gateway_virtual_hosts(
    push: PushContext,
    proxy: Proxy,
    gateway: GatewayConfig,
    server_port: int,
    hosts: list[str],
    is_tls: bool = False,
) -> list[tuple[str, list[rc.Route]]]:
    """``(host, routes)`` for each host a gateway server serves, from the VirtualServices
    bound to the gateway whose hosts intersect the server's hosts (``is_tls``: the server
    terminates TLS)."""
    ctx = RouteContext(
        push,
        proxy.namespace,
        gateway.ref,
        server_port,
        dict(proxy.labels),
        default_port=_gateway_default_port,
        is_tls=is_tls,
    )
    by_host: dict[str, list[rc.Route]] = {}
    order: list[str] = []
    for vs in push.virtual_services_for_gateway(gateway.ref):
        for server_host in hosts:
            ns, pattern = split_server_host(server_host, gateway.namespace)
            if ns not in ("*", vs.namespace):
                continue
            if not visible(vs.export_to, vs.namespace, gateway.namespace) and ns == "*":
                continue
            for vh in vs.hosts:
                if host_matches(pattern, vh):
                    host = vh
                elif host_matches(vh, pattern):
                    host = pattern
                else:
                    continue
                if host not in by_host:
                    by_host[host] = []
                    order.append(host)
                by_host[host].extend(http_routes(ctx, vs))
    order.sort(key=specificity)
    return [(h, by_host[h]) for h in order if by_host[h]]


def gateway_route_config(
    push: PushContext,
    proxy: Proxy,
    bind_port: int,
    servers: list[tuple[GatewayConfig, Server]],
    name: str | None = None,
) -> route_pb2.RouteConfiguration:
    """``http.<bind_port>``: every host of the HTTP servers bound to that port (or ``name``:
    the route config of one HTTPS server, ``https.<port>.<port name>.<gateway>.<ns>``)."""
    vhosts: list[rc.VirtualHost] = []
    seen: set[str] = set()
    for gw, server in servers:
        port = server.port.number or 0
        hosts = list(server.hosts)
        redirect = bool(server.tls is not None and server.tls.httpsRedirect)
        tls = (server.port.protocol or "").upper() == "HTTPS"
        for host, routes in gateway_virtual_hosts(push, proxy, gw, port, hosts, tls):
            before = len(vhosts)
            _add_vhost(vhosts, seen, f"{host}:{port}", gateway_domains(host, port), routes)
            if redirect and len(vhosts) > before:
                vhosts[-1].require_tls = rc.VirtualHost.ALL
    if not vhosts:
        vhosts.append(rc.VirtualHost(name=f"blackhole:{bind_port}", domains=["*"]))
    return route_pb2.RouteConfiguration(
        name=name or f"http.{bind_port}",
        virtual_hosts=vhosts,
        validate_clusters=BoolValue(value=False),
    )


__all__ = [
    "PLACEHOLDER_HOST",
    "OnDemandRoutes",
    "explicit_on_demand_route_config",
    "explicit_route_config",
    "explicit_vhds_route_config",
    "gateway_domains",
    "gateway_route_config",
    "merge_vhds",
    "service_domains",
    "sidecar_http_ports",
    "sidecar_on_demand_route_config",
    "sidecar_route_config",
    "sidecar_vhds_route_config",
    "vhds_enabled",
    "vhost_resource_name",
]
