"""The generator: the config one proxy gets (CDS, EDS, LDS, RDS, ECDS) from one PushContext.

``generate_config(node, push)`` is pure: the same node and context give the same result, the
resources (a type URL to ``{name: message}``) and the names of the secrets they refer to over
ADS. Messages may be shared with other proxies through the context's memo (clusters and
endpoints per namespace, route configs per namespace and port): callers must not modify them.
``generate(node, push)`` is its resources alone. The proxy's EnvoyFilters are applied last,
to the generated resources (``envoyfilter``); the ECDS map holds only what their
EXTENSION_CONFIG patches add.

Every route config an HCM names through RDS is in the RDS map; every EDS cluster's
``service_name`` has a load assignment in the EDS map; every ``kubernetes://`` secret a
cluster or gateway chain names over ADS is in ``secret_names``. The SDS map stays empty here:
translation never reads Secrets; the xDS secrets generator (``pilotfish.xds.secrets``) fills
it, and the composition root (``pilotfish.server``) puts the two together. The proxy's own
certificate (``default``, ``ROOTCA``) comes from its agent, never from the control plane.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from functools import partial

from google.protobuf.message import Message

from pilotfish.api.layered import Layered
from pilotfish.api.node import NodeInfo
from pilotfish.api.typeurls import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    SECRET_TYPE,
    VIRTUAL_HOST_TYPE,
)
from pilotfish.api.vhost_directory import HostDirectory, RouteConfigHosts
from pilotfish.model.proxy import Proxy
from pilotfish.model.push_context import PushContext
from pilotfish.translate import dependencies, ondemand
from pilotfish.translate.clusters import (
    ClientTls,
    inbound_cluster,
    inbound_passthrough_cluster,
    localized_endpoints,
    outbound_clusters,
)
from pilotfish.translate.envoyfilter import apply_patches, proxy_patches
from pilotfish.translate.filters import HCM_FILTER
from pilotfish.translate.gateway_tls import (
    auto_passthrough_cluster,
    gateway_tls_servers,
    has_auto_passthrough,
)
from pilotfish.translate.listeners import (
    bound_egress_listeners,
    explicit_inbound,
    explicit_outbound,
    gateway_listeners,
    gateway_servers,
    served_ports,
    virtual_inbound,
    virtual_outbound,
)
from pilotfish.translate.route_configs import (
    OnDemandRoutes,
    explicit_on_demand_route_config,
    explicit_route_config,
    explicit_vhds_route_config,
    gateway_route_config,
    sidecar_http_ports,
    sidecar_on_demand_route_config,
    sidecar_route_config,
    sidecar_vhds_route_config,
    vhds_enabled,
)
from pilotfish.translate.tls import has_workload_identity

Resources = dict[str, dict[str, Message]]

#: Every type translation generates, in order (dependencies' one list of them).
TYPE_URLS = dependencies.ALL_TYPES
ALL_TYPES = frozenset(TYPE_URLS)
#: EnvoyFilter targets inside route configs: a proxy they patch keeps whole route configs.
_ROUTE_PATCH_TARGETS = frozenset({"ROUTE_CONFIGURATION", "VIRTUAL_HOST", "HTTP_ROUTE"})
#: Types that need the outbound clusters (the secrets their TLS names go over SDS).
_CLUSTER_TYPES = frozenset({CLUSTER_TYPE, ENDPOINT_TYPE, SECRET_TYPE})


@dataclass(frozen=True)
class ProxyConfig:
    """What translation gives one proxy."""

    #: CDS, EDS, LDS and RDS by type URL; the SDS map is empty (see ``secret_names``).
    resources: Resources
    #: The ``kubernetes://`` secrets ``resources`` refer to over ADS, sorted.
    secret_names: tuple[str, ...]
    #: Clusters sent only when the proxy asks for them by name (on-demand CDS; empty unless
    #: the mesh config's ``onDemandClusters`` is on, see ``ondemand``).
    on_demand: frozenset[str] = frozenset()
    #: Virtual hosts sent only when the proxy asks for a host of theirs (on-demand VHDS, with
    #: ``onDemandClusters`` and ``virtualHostDiscovery``), and how hosts resolve to them.
    on_demand_vhosts: frozenset[str] = frozenset()
    directory: HostDirectory | None = None


def client_tls(proxy: Proxy) -> ClientTls:
    return ClientTls(
        has_workload_identity(proxy.labels), proxy.node.trust_domain, proxy.node.system_roots
    )


#: Type URL -> the names of that type a push needs (a type not in it: every resource).
Names = Mapping[str, frozenset[str]]


def _picked(by_name: Mapping[str, Message], names: frozenset[str] | None) -> Mapping[str, Message]:
    """``by_name`` itself, or only its entries named in ``names``."""
    if names is None:
        return by_name
    return {n: m for n in names if (m := by_name.get(n)) is not None}


def _clusters_and_endpoints(
    push: PushContext, proxy: Proxy, out: Resources, names: Names | None = None
) -> set[str]:
    """Add the outbound clusters (only those in ``names``, when it names clusters, and the
    load assignments they and ``names`` name); returns the ADS credentials they name."""
    scope = None if proxy.is_router else proxy.sidecar_scope(push)
    shared = outbound_clusters(push, proxy.namespace, client_tls(proxy), scope)
    clusters = (names or {}).get(CLUSTER_TYPE)
    endpoints = (names or {}).get(ENDPOINT_TYPE)
    # An outbound EDS cluster's load assignment is named after it.
    endpoints = None if clusters is None or endpoints is None else endpoints | clusters
    # Outbound clusters and load assignments are shared by a view (thousands at a thousand
    # services): a push that names a few of them copies only those. A whole map starts as a
    # layered copy of the view's (what the proxy adds or patches is recorded), so the xDS
    # server interns the view's map once, not once per proxy.
    for type_url, by_name, picked in (
        (CLUSTER_TYPE, shared.clusters, clusters),
        (ENDPOINT_TYPE, shared.endpoints, endpoints),
    ):
        if picked is None:
            _add_shared(out, type_url, by_name)
        else:
            out[type_url].update(_picked(by_name, picked))
    if shared.localities:
        localized = localized_endpoints(push, proxy, shared)
        out[ENDPOINT_TYPE].update(_picked(localized, endpoints))
    return set(shared.credentials)


def _add_shared(out: Resources, type_url: str, shared: Mapping[str, Message]) -> None:
    """Add a view's shared map: the first as a layered copy (see ``_clusters_and_endpoints``),
    the others entry by entry."""
    if out[type_url]:
        out[type_url].update(shared)
    else:
        out[type_url] = Layered(shared)


def outbound_view(node: NodeInfo, push: PushContext, names: Names) -> Hashable | None:
    """A key shared by the sidecars whose generation of ``names`` at ``push`` gives the same
    resources, when ``names`` are outbound clusters and load assignments only (a push of
    endpoint changes): they come from the shared maps of one view (namespace and Sidecar
    scope, client TLS) and nothing specific to the proxy touches them (no EnvoyFilter patch,
    no on-demand clusters, no locality-aware load assignments). None: not sure."""
    if not names or set(names) - {CLUSTER_TYPE, ENDPOINT_TYPE}:
        return None
    if not all(n.startswith("outbound|") for by_type in names.values() for n in by_type):
        return None
    proxy = Proxy.from_node(node, push)
    if proxy.is_router or ondemand.enabled(push, proxy) or proxy_patches(push, proxy):
        return None
    scope = proxy.sidecar_scope(push)
    client = client_tls(proxy)
    if outbound_clusters(push, proxy.namespace, client, scope).localities:
        return None
    return ("outbound_view", scope.key, client)


def generate_sidecar(
    proxy: Proxy,
    push: PushContext,
    types: frozenset[str] = ALL_TYPES,
    names: Names | None = None,
) -> ProxyConfig:
    out: Resources = {t: {} for t in TYPE_URLS}
    credentials: set[str] = set()
    if types & _CLUSTER_TYPES:
        credentials = _clusters_and_endpoints(push, proxy, out, names)
    clusters = out[CLUSTER_TYPE]
    # REDIRECT: the app listens in its own network namespace, reached on localhost. NONE
    # (explicit mode, a VM or a loopback test host): the app is reached on the workload's
    # own address, so several workloads can share one host.
    app_address = "127.0.0.1"
    if proxy.interception_mode == "NONE" and proxy.ip not in ("", "0.0.0.0"):
        app_address = proxy.ip
    if CLUSTER_TYPE in types:
        scope = proxy.sidecar_scope(push)
        ingress = {i.port: i for i in scope.ingress}
        for target, protocol in served_ports(proxy):
            address, app_port, bind_local = app_address, target, False
            if (ing := ingress.get(target)) is not None and ing.endpoint_port:
                # The Sidecar's ingress defaultEndpoint: 127.0.0.1:PORT, or 0.0.0.0:PORT (the
                # workload's own address, reached from 127.0.0.6 past the capture rules).
                app_port = ing.endpoint_port
                if ing.endpoint_host == "0.0.0.0" and proxy.ip not in ("", "0.0.0.0"):
                    address = proxy.ip
                    bind_local = proxy.interception_mode != "NONE"
            # Depends on the settings and these values only: one message for every proxy
            # whose app is on the same address and port (127.0.0.1 in pods), carried over to
            # the next context, serialized once.
            args = (target, protocol, address, app_port, bind_local)
            # The Sidecar's connection pool for the port, keyed by its content.
            pool = scope.inbound_connection_pool(target)
            pool_key = pool.model_dump_json(exclude_none=True) if pool is not None else None
            c = push.reuse(
                ("inbound_cluster", *args, pool_key),
                push.settings,
                partial(inbound_cluster, push, *args, pool=pool),
            )
            clusters[c.name] = c
    listeners = out[LISTENER_TYPE]
    routes = out[ROUTE_TYPE]
    want_lds = LISTENER_TYPE in types
    want_rds = ROUTE_TYPE in types or VIRTUAL_HOST_TYPE in types
    vhds = (
        want_rds
        and vhds_enabled(push, proxy)
        and not any(p.apply_to in _ROUTE_PATCH_TARGETS for p in proxy_patches(push, proxy))
    )
    # On-demand virtual hosts: those of services go out only when the proxy asks for a host.
    lazy_vhosts = vhds and ondemand.enabled(push, proxy)
    on_demand_vhosts: set[str] = set()
    hosts: list[tuple[str, RouteConfigHosts]] = []

    def add_on_demand(found: OnDemandRoutes) -> None:
        routes[found.config.name] = found.config
        _add_shared(out, VIRTUAL_HOST_TYPE, found.vhosts)
        on_demand_vhosts.update(found.on_demand)
        hosts.append((found.config.name, found.hosts))

    def add_routes(port: int) -> None:
        if lazy_vhosts:
            add_on_demand(sidecar_on_demand_route_config(push, proxy, port))
        elif vhds:
            config, vhosts = sidecar_vhds_route_config(push, proxy, port)
            routes[config.name] = config
            _add_shared(out, VIRTUAL_HOST_TYPE, vhosts)
        else:
            routes[str(port)] = sidecar_route_config(push, proxy, port)

    if proxy.interception_mode == "NONE":
        if proxy.node.outbound_port:
            name = str(proxy.node.outbound_port)
            if lazy_vhosts:
                add_on_demand(explicit_on_demand_route_config(push, proxy, name))
            elif vhds:
                config, vhosts = explicit_vhds_route_config(push, proxy, name)
                routes[name] = config
                _add_shared(out, VIRTUAL_HOST_TYPE, vhosts)
            elif want_rds:
                routes[name] = explicit_route_config(push, proxy, name)
            if want_lds:
                lst = explicit_outbound(push, proxy)
                listeners[lst.name] = lst
        if want_lds:
            for lst in explicit_inbound(push, proxy):
                listeners[lst.name] = lst
    else:
        if CLUSTER_TYPE in types:
            passthrough = push.reuse(
                ("inbound_passthrough_cluster",),
                push.settings,
                partial(inbound_passthrough_cluster, push),
            )
            clusters[passthrough.name] = passthrough
        if want_rds:
            for port in sidecar_http_ports(push, proxy.sidecar_scope(push)):
                add_routes(port)
        if want_lds:
            for lst in (virtual_outbound(push, proxy), virtual_inbound(push, proxy)):
                listeners[lst.name] = lst
    for lst in bound_egress_listeners(push, proxy):
        port = lst.name.rpartition("_")[2]
        if want_lds:
            listeners[lst.name] = lst
        http = lst.filter_chains[0].filters[0].name == HCM_FILTER
        if want_rds and http and port not in routes:
            add_routes(int(port))
    if lazy_vhosts:
        return ProxyConfig(
            out,
            tuple(sorted(credentials)),
            on_demand_vhosts=frozenset(on_demand_vhosts),
            directory=HostDirectory(tuple(sorted(hosts, key=lambda h: h[0]))),
        )
    return ProxyConfig(out, tuple(sorted(credentials)))


def generate_router(proxy: Proxy, push: PushContext) -> ProxyConfig:
    out: Resources = {t: {} for t in TYPE_URLS}
    credentials = _clusters_and_endpoints(push, proxy, out)
    if has_auto_passthrough(push, proxy):
        # AUTO_PASSTHROUGH forwards by SNI to Istio's ``outbound_.PORT_.SUBSET_.HOST``.
        for cluster in list(out[CLUSTER_TYPE].values()):
            if (sni := auto_passthrough_cluster(cluster)) is not None:
                out[CLUSTER_TYPE][sni.name] = sni
    for bind, servers in gateway_servers(push, proxy).items():
        rc = gateway_route_config(push, proxy, bind, servers)
        out[ROUTE_TYPE][rc.name] = rc
    for bind, tls_servers in gateway_tls_servers(push, proxy).items():
        for ts in tls_servers:
            credentials.update(ts.credentials)
            if ts.route_name:
                rc = gateway_route_config(
                    push, proxy, bind, [(ts.gateway, ts.server)], name=ts.route_name
                )
                out[ROUTE_TYPE][rc.name] = rc
    for lst in gateway_listeners(push, proxy):
        out[LISTENER_TYPE][lst.name] = lst
    return ProxyConfig(out, tuple(sorted(credentials)))


def generate_config(
    node: NodeInfo,
    push: PushContext,
    types: frozenset[str] = ALL_TYPES,
    names: Names | None = None,
) -> ProxyConfig:
    """The config of ``node`` at ``push``'s revision, with the secrets it names.

    ``types`` limits the work to what a push needs (a route change needs no clusters); a
    type left out comes back empty. ``names`` may narrow a type further to the resources a
    push compares (the outbound clusters and load assignments of one service: the others
    may be left out; the load assignments of the clusters named are kept). Sidecars skip
    what is not asked for; routers are generated whole (their config is small and its parts
    depend on each other)."""
    proxy = Proxy.from_node(node, push)
    if proxy.is_router:
        config = generate_router(proxy, push)
        apply_patches(proxy, push, config.resources)
        return config
    lazy = ondemand.enabled(push, proxy) and CLUSTER_TYPE in types
    # Which clusters are on demand depends on what the listeners name: they are generated too.
    wanted = types | {LISTENER_TYPE} if lazy else types
    # On-demand names are computed from every cluster: then every cluster is generated.
    config = generate_sidecar(proxy, push, wanted, None if lazy else names)
    apply_patches(proxy, push, config.resources, wanted)
    if lazy:
        resources = config.resources
        on_demand = ondemand.on_demand_clusters(
            resources[CLUSTER_TYPE], resources[LISTENER_TYPE].values()
        )
        return dataclasses.replace(config, on_demand=on_demand)
    return config


def generate(node: NodeInfo, push: PushContext) -> Resources:
    """CDS, EDS, LDS and RDS resources for ``node`` at ``push``'s revision."""
    return generate_config(node, push).resources
