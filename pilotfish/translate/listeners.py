"""Listeners (LDS) for sidecars in both interception modes and for gateways.

REDIRECT sidecar:

- ``virtualOutbound`` on 0.0.0.0:15001 with ``original_dst``: one filter chain per HTTP port
  (``destination_port``) to the HCM of route config ``"PORT"``; one per TCP service port
  matched by VIP/32 and port to ``tcp_proxy``; a service without an address (a wildcard
  ServiceEntry host) is matched on its TLS ports by SNI and on its TCP ports by port alone
  (``_addressless_chains``); the default chain goes to PassthroughCluster (ALLOW_ANY; the
  Sidecar's ``egressProxy`` cluster when it names one) or BlackHoleCluster (REGISTRY_ONLY).
  Envoy compares the destination port before
  the destination IP, so a TCP service's VIP chain wins over the HTTP chain of the same port.
- ``virtualInbound`` on 0.0.0.0:15006 with ``original_dst``: one chain per served app port to
  ``inbound|PORT||`` (HTTP through an HCM with an inline route config, TCP through
  ``tcp_proxy``); the default chain goes to InboundPassthroughCluster.

NONE (explicit) sidecar: an HTTP listener on ``127.0.0.1:outbound_port`` whose route config
holds every service; per served app port ``T`` a listener on ``IP:inbound_ports[T]`` to
``inbound|T||``. TCP services are not reachable through the explicit outbound listener.

Inbound mTLS (``peer_authn``): for a proxy with a workload identity each served port gets
the chains of its PeerAuthentication mode, behind a TLS inspector: STRICT one chain matching
``transport_protocol: tls`` that terminates mesh mTLS (client certificate required);
PERMISSIVE that chain (also matching the mesh ALPN) plus a ``raw_buffer`` plaintext chain;
DISABLE the plaintext chain only. ``virtualInbound`` then has passthrough chains of the
workload's mode instead of a default chain, so a connection no chain accepts is closed.
Inbound HCMs on mTLS chains set ``x-forwarded-client-cert`` as Istio (APPEND_FORWARD with
``By``, ``Hash``, ``Subject``, ``URI``, ``DNS``); plaintext chains sanitize it. A proxy
without a workload identity keeps plaintext chains, and a STRICT port goes to the blackhole.

Router: one listener per bound port, ``0.0.0.0_8080`` style names, HCM with RDS
``http.<port>`` for HTTP servers; TCP servers (``TCP``, ``MONGO``, ``MYSQL``, ``REDIS``) get
one chain to ``tcp_proxy`` with the weighted clusters of the first ``tcp`` rule bound to them
(``tcp_routes``); TLS servers come from ``gateway_tls`` (SNI-selected chains that terminate
HTTPS, terminate TLS into ``tcp`` rules, or pass TLS through).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from envoy.config.core.v3 import address_pb2, base_pb2
from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.config.listener.v3.listener_pb2 import Listener
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.listener.original_dst.v3 import original_dst_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from pilotfish.api.networking import Server, ServerTLSSettings
from pilotfish.model.config import GatewayConfig
from pilotfish.model.proxy import Proxy
from pilotfish.model.push_context import PushContext
from pilotfish.model.sidecar import SidecarScope
from pilotfish.registry.types import Protocol, Service, parse_protocol, select_protocol
from pilotfish.translate import ondemand
from pilotfish.translate.common import (
    BLACKHOLE_CLUSTER,
    INBOUND_CAPTURE,
    INBOUND_PASSTHROUGH_CLUSTER,
    OUTBOUND_CAPTURE,
    PASSTHROUGH_CLUSTER,
    VIRTUAL_INBOUND,
    VIRTUAL_OUTBOUND,
    ClusterKey,
    duration,
    pack,
    socket_address,
    u32,
)
from pilotfish.translate.denials import denial_replies
from pilotfish.translate.filters import (
    HCM_FILTER,
    http_connection_manager,
    inbound_http_filters,
    inbound_network_filters,
)
from pilotfish.translate.gateway_tls import gateway_tls_servers, tls_filter_chains
from pilotfish.translate.observability import (
    client_http,
    client_tcp_logs,
    server_http,
    server_tcp_logs,
    telemetry_key,
)
from pilotfish.translate.peer_authn import DISABLE, PERMISSIVE, STRICT, MtlsPolicy, workload_policy
from pilotfish.translate.route_configs import (
    egress_proxy_cluster,
    labels_key,
    sidecar_http_ports,
)
from pilotfish.translate.tcp_routes import (
    gateway_tcp_clusters,
    sidecar_tcp_clusters,
    sidecar_tls_routes,
    source_subnet_key,
)
from pilotfish.translate.tls import (
    MESH_SERVER_ALPN,
    has_workload_identity,
    mesh_server_context,
    server_tls_context,
    tls_socket,
)

TCP_PROXY_FILTER = "envoy.filters.network.tcp_proxy"
ORIGINAL_DST_FILTER = "envoy.filters.listener.original_dst"
TLS_INSPECTOR_FILTER = "envoy.filters.listener.tls_inspector"


def _original_dst() -> lc.ListenerFilter:
    return lc.ListenerFilter(
        name=ORIGINAL_DST_FILTER, typed_config=pack(original_dst_pb2.OriginalDst())
    )


def tls_inspector() -> lc.ListenerFilter:
    return lc.ListenerFilter(
        name=TLS_INSPECTOR_FILTER, typed_config=pack(tls_inspector_pb2.TlsInspector())
    )


def inspects_tls(chains: list[lc.FilterChain]) -> bool:
    """True when some chain matches on what the TLS inspector finds (protocol, SNI, ALPN)."""
    return any(
        c.filter_chain_match.transport_protocol
        or c.filter_chain_match.server_names
        or c.filter_chain_match.application_protocols
        for c in chains
    )


def tcp_proxy_filter(
    stat_prefix: str, clusters: list[tuple[str, int]], access_logs: Sequence[Any] = ()
) -> lc.Filter:
    """``tcp_proxy`` to one cluster, or weighted clusters when several are given; with
    ``access_logs`` (Istio's TCP metrics), logged on connect and at the end."""
    tp = tcp_proxy_pb2.TcpProxy(stat_prefix=stat_prefix)
    if access_logs:
        tp.access_log.extend(access_logs)
        tp.access_log_options.flush_access_log_on_connected = True
    if len(clusters) == 1:
        tp.cluster = clusters[0][0]
    else:
        for name, weight in clusters:
            tp.weighted_clusters.clusters.add(name=name, weight=weight)
    return lc.Filter(name=TCP_PROXY_FILTER, typed_config=pack(tp))


def hcm_filter(**kwargs: Any) -> lc.Filter:
    return lc.Filter(name=HCM_FILTER, typed_config=pack(http_connection_manager(**kwargs)))


# ---- outbound ---------------------------------------------------------------------------------


def serves_grpc(
    scope: SidecarScope, port: int | None = None, protocol: Protocol = Protocol.GRPC
) -> bool:
    """Whether a service the scope sees speaks gRPC (on ``port``, or on any port): such
    connection managers count gRPC messages for Istio's message metrics. With
    ``protocol=Protocol.GRPC_WEB``: whether one speaks gRPC-Web, so the connection manager
    translates gRPC-Web to gRPC (Istio keys it on the listener's port protocol; here any
    GRPC-Web service on the port turns it on, which leaves plain gRPC and HTTP untouched)."""
    return any(
        sp.protocol == protocol and (port is None or sp.port == port)
        for svc in scope.services
        for sp in svc.ports
    )


def virtual_outbound(push: PushContext, proxy: Proxy) -> Listener:
    """``virtualOutbound`` (shared by the proxies of a namespace unless TCP rules use labels)."""
    scope = proxy.sidecar_scope(push)

    on_demand = ondemand.enabled(push, proxy)

    def compute() -> Listener:
        chains: list[lc.FilterChain] = []
        tcp_logs = client_tcp_logs(push, proxy)
        http_ports = sidecar_http_ports(push, scope)
        for port in http_ports:
            chains.append(
                lc.FilterChain(
                    name=f"0.0.0.0_{port}",
                    filter_chain_match=lc.FilterChainMatch(destination_port=u32(port)),
                    filters=[
                        hcm_filter(
                            stat_prefix=f"outbound_0.0.0.0_{port}",
                            route_config_name=str(port),
                            telemetry=client_http(push, proxy, serves_grpc(scope, port)),
                            on_demand=on_demand,
                            grpc_web=serves_grpc(scope, port, Protocol.GRPC_WEB),
                        )
                    ],
                )
            )
        seen: set[tuple[str, int]] = set()
        sni_ports: set[int] = set()
        #: Port -> SNI names an address-less chain of that port already matches.
        sni_taken: dict[int, set[str]] = {}
        for svc in scope.services:
            first = svc.vip or (svc.addresses[0] if svc.addresses else None)
            if not first and svc.source_kind == "ServiceEntry":
                chains.extend(
                    _addressless_chains(
                        push, proxy, scope, svc, set(http_ports), seen, sni_taken, tcp_logs
                    )
                )
            if not first:
                continue
            for sp in svc.ports:
                if sp.protocol.is_http or (first, sp.port) in seen:
                    continue
                if not scope.on_port(svc, sp.port):
                    continue
                seen.add((first, sp.port))
                if sp.protocol in (Protocol.TLS, Protocol.HTTPS):
                    tls_routes = sidecar_tls_routes(push, proxy, svc, sp.port)
                    for k, (snis, routed) in enumerate(tls_routes):
                        sni_ports.add(sp.port)
                        chains.append(
                            lc.FilterChain(
                                name=f"{first}_{sp.port}_sni{k}",
                                filter_chain_match=lc.FilterChainMatch(
                                    destination_port=u32(sp.port),
                                    prefix_ranges=_prefix_ranges(svc),
                                    server_names=snis,
                                ),
                                filters=[tcp_proxy_filter(routed[0][0], routed, tcp_logs)],
                            )
                        )
                clusters = sidecar_tcp_clusters(push, proxy, svc, sp.port)
                chains.append(
                    lc.FilterChain(
                        name=f"{first}_{sp.port}",
                        filter_chain_match=lc.FilterChainMatch(
                            destination_port=u32(sp.port),
                            prefix_ranges=_prefix_ranges(svc),
                        ),
                        filters=[tcp_proxy_filter(clusters[0][0], clusters, tcp_logs)],
                    )
                )
        fallback = BLACKHOLE_CLUSTER if scope.registry_only else PASSTHROUGH_CLUSTER
        fallback = egress_proxy_cluster(scope) or fallback
        listener_filters = [_original_dst()]
        sni_ports.update(port for port, names in sni_taken.items() if names)
        if sni_ports:
            listener_filters.append(_sni_inspector(sni_ports))
        return Listener(
            name=VIRTUAL_OUTBOUND,
            address=socket_address("0.0.0.0", OUTBOUND_CAPTURE),
            listener_filters=listener_filters,
            filter_chains=chains,
            default_filter_chain=lc.FilterChain(
                name=fallback, filters=[tcp_proxy_filter(fallback, [(fallback, 100)], tcp_logs)]
            ),
            traffic_direction=base_pb2.OUTBOUND,
        )

    key = (
        "virtual_outbound",
        scope.key,
        labels_key(push, proxy.labels),
        source_subnet_key(push, proxy),
        telemetry_key(push, proxy),
    )
    return push.memo(key, compute)


def _addressless_chains(
    push: PushContext,
    proxy: Proxy,
    scope: SidecarScope,
    svc: Service,
    http_ports: set[int],
    seen: set[tuple[str, int]],
    sni_taken: dict[int, set[str]],
    tcp_logs: Sequence[Any],
) -> list[lc.FilterChain]:
    """Chains of a ServiceEntry host without an address (a wildcard host, or one with no
    ``addresses`` and no VIP): nothing tells its connections apart by destination, so, as
    Istio does, its TLS/HTTPS ports match the connection's SNI (the ``tls`` rules'
    ``sniHosts`` first, then the host itself; Envoy's ``*.example.com`` matches any name under
    it) and a TCP port takes every connection to that port no other chain takes (the first
    such service of a port wins, as Istio's listener conflicts). HTTP ports route by Host."""
    out: list[lc.FilterChain] = []
    for sp in svc.ports:
        if sp.protocol.is_http or sp.port in http_ports or not scope.on_port(svc, sp.port):
            continue
        if sp.protocol in (Protocol.TLS, Protocol.HTTPS):
            taken = sni_taken.setdefault(sp.port, set())
            routes = sidecar_tls_routes(push, proxy, svc, sp.port)
            own = [(ClusterKey.outbound(sp.port, "", svc.hostname).name, 100)]
            for k, (snis, routed) in enumerate([*routes, ([svc.hostname], own)]):
                names = [n for n in snis if n not in taken]
                if not names:
                    continue
                taken.update(names)
                out.append(
                    lc.FilterChain(
                        name=f"0.0.0.0_{sp.port}_{svc.hostname}_sni{k}",
                        filter_chain_match=lc.FilterChainMatch(
                            destination_port=u32(sp.port), server_names=names
                        ),
                        filters=[tcp_proxy_filter(routed[0][0], routed, tcp_logs)],
                    )
                )
            continue
        if ("0.0.0.0", sp.port) in seen:
            continue
        seen.add(("0.0.0.0", sp.port))
        clusters = sidecar_tcp_clusters(push, proxy, svc, sp.port)
        out.append(
            lc.FilterChain(
                name=f"0.0.0.0_{sp.port}",
                filter_chain_match=lc.FilterChainMatch(destination_port=u32(sp.port)),
                filters=[tcp_proxy_filter(clusters[0][0], clusters, tcp_logs)],
            )
        )
    return out


def _sni_inspector(ports: set[int]) -> lc.ListenerFilter:
    """The TLS inspector, for the ports ``tls`` rules route by SNI only: on other ports a
    server-first protocol (MySQL) must not wait for the client to speak."""
    inspector = tls_inspector()
    wanted = inspector.filter_disabled.not_match
    # An or_match needs two rules at least.
    rules = [wanted] if len(ports) == 1 else [wanted.or_match.rules.add() for _ in ports]
    for rule, port in zip(rules, sorted(ports), strict=True):
        rule.destination_port_range.start = port
        rule.destination_port_range.end = port + 1
    return inspector


def _prefix_ranges(svc: Service) -> list[address_pb2.CidrRange]:
    """The destinations a TCP chain of ``svc`` matches: every address a ServiceEntry lists
    (CIDRs included, as Istio), else its VIP."""
    out = []
    for text in svc.addresses or (str(svc.vip),):
        address, _, length = text.partition("/")
        bits = int(length) if length else (128 if ":" in address else 32)
        out.append(address_pb2.CidrRange(address_prefix=address, prefix_len=u32(bits)))
    return out


def explicit_outbound(push: PushContext, proxy: Proxy) -> Listener:
    """NONE mode: the HTTP listener the app sends its requests to."""
    port = int(proxy.node.outbound_port or 0)
    return Listener(
        name=f"127.0.0.1_{port}",
        address=socket_address("127.0.0.1", port),
        filter_chains=[
            lc.FilterChain(
                filters=[
                    hcm_filter(
                        stat_prefix=f"outbound_127.0.0.1_{port}",
                        route_config_name=str(port),
                        telemetry=client_http(push, proxy, serves_grpc(proxy.sidecar_scope(push))),
                        on_demand=ondemand.enabled(push, proxy),
                        grpc_web=serves_grpc(proxy.sidecar_scope(push), None, Protocol.GRPC_WEB),
                    )
                ]
            )
        ],
        traffic_direction=base_pb2.OUTBOUND,
    )


def bound_egress_listeners(push: PushContext, proxy: Proxy) -> list[Listener]:
    """The Sidecar's egress listeners with ``captureMode: NONE``: a listener bound on
    ``bind:port`` (``127.0.0.1`` when no ``bind``) the app sends its requests to. An HTTP
    port is routed with the route config of that port (``"PORT"``); a TLS or HTTPS port
    forwards the still-encrypted stream by its SNI (``_bound_tls_chains``); a TCP port (TCP,
    Mongo, MySQL, Redis) forwards each connection to the first service, by hostname, the
    listener imports on that port (its ``tcp`` rules applied), as Istio resolves a bound
    listener's conflicts; with no such service there is no listener."""
    scope = proxy.sidecar_scope(push)
    out = []
    for eg in scope.bound_egress():
        port = int(eg.port or 0)
        bind = eg.bind or "127.0.0.1"
        name = f"{bind}_{port}"
        protocol = parse_protocol(eg.protocol)
        if protocol in (Protocol.TLS, Protocol.HTTPS):
            chains = _bound_tls_chains(push, proxy, scope, name, port)
            if not chains:
                continue
            out.append(
                Listener(
                    name=name,
                    address=socket_address(bind, port),
                    listener_filters=[tls_inspector()],
                    filter_chains=chains,
                    traffic_direction=base_pb2.OUTBOUND,
                )
            )
            continue
        if protocol is not None and not protocol.is_http:
            chain = _bound_tcp_chain(push, proxy, scope, name, port, protocol)
            if chain is None:
                continue
        else:
            chain = lc.FilterChain(
                filters=[
                    hcm_filter(
                        stat_prefix=f"outbound_{name}",
                        route_config_name=str(port),
                        telemetry=client_http(push, proxy, serves_grpc(scope, port)),
                        on_demand=ondemand.enabled(push, proxy),
                        grpc_web=serves_grpc(scope, port, Protocol.GRPC_WEB),
                    )
                ]
            )
        out.append(
            Listener(
                name=name,
                address=socket_address(bind, port),
                filter_chains=[chain],
                traffic_direction=base_pb2.OUTBOUND,
            )
        )
    return out


def _bound_tls_chains(
    push: PushContext, proxy: Proxy, scope: SidecarScope, name: str, port: int
) -> list[lc.FilterChain]:
    """The chains of a bound TLS (or HTTPS) egress port, selected by the SNI the app sends
    (the TLS inspector reads it; the stream is forwarded still encrypted):

    - the ``tls`` rules of the imported services' VirtualServices, by their ``sniHosts``;
    - each imported service without ``tls`` rules, by its hostname (``*.example.com``
      matches its subdomains), to its cluster with its ``tcp`` rules applied;
    - a connection no SNI claims goes to the first of those services by hostname, as in
      Istio, whose bound listener keeps the first service's SNI-less chain.
    """
    services = scope.services_on_port(port)
    logs = client_tcp_logs(push, proxy)
    chains: list[lc.FilterChain] = []
    taken: set[str] = set()
    plain: list[Service] = []
    for svc in services:
        routes = sidecar_tls_routes(push, proxy, svc, port)
        if not routes:
            plain.append(svc)
        for k, (snis, routed) in enumerate(routes):
            fresh = [h for h in snis if h not in taken]
            if not fresh:
                continue
            taken.update(fresh)
            chains.append(
                lc.FilterChain(
                    name=f"{svc.hostname}_{port}_sni{k}",
                    filter_chain_match=lc.FilterChainMatch(server_names=fresh),
                    filters=[tcp_proxy_filter(routed[0][0], routed, logs)],
                )
            )
    for svc in plain:
        if svc.hostname in taken or svc.hostname == "*":
            continue
        taken.add(svc.hostname)
        clusters = sidecar_tcp_clusters(push, proxy, svc, port)
        chains.append(
            lc.FilterChain(
                name=f"{svc.hostname}_{port}",
                filter_chain_match=lc.FilterChainMatch(server_names=[svc.hostname]),
                filters=[tcp_proxy_filter(clusters[0][0], clusters, logs)],
            )
        )
    if plain:
        clusters = sidecar_tcp_clusters(push, proxy, plain[0], port)
        chains.append(
            lc.FilterChain(
                name=name, filters=[tcp_proxy_filter(f"outbound_{name}", clusters, logs)]
            )
        )
    return chains


def _bound_tcp_chain(
    push: PushContext,
    proxy: Proxy,
    scope: SidecarScope,
    name: str,
    port: int,
    protocol: Protocol,
) -> lc.FilterChain | None:
    if protocol == Protocol.UDP:
        return None  # refused at apply
    services = scope.services_on_port(port)
    if not services:
        return None
    clusters = sidecar_tcp_clusters(push, proxy, services[0], port)
    stat = f"outbound_{name}"
    return lc.FilterChain(filters=[tcp_proxy_filter(stat, clusters, client_tcp_logs(push, proxy))])


# ---- inbound ----------------------------------------------------------------------------------


def inbound_route_config(target: int) -> route_pb2.RouteConfiguration:
    name = ClusterKey.inbound(target).name
    return route_pb2.RouteConfiguration(
        name=name,
        virtual_hosts=[
            rc.VirtualHost(
                name=f"inbound|http|{target}",
                domains=["*"],
                routes=[
                    rc.Route(
                        name="default",
                        match=rc.RouteMatch(prefix="/"),
                        route=rc.RouteAction(cluster=name, timeout=duration(0)),
                    )
                ],
            )
        ],
    )


def _inbound_filters(
    push: PushContext,
    proxy: Proxy,
    target: int,
    protocol: Protocol,
    stat: str,
    *,
    mtls: bool = False,
) -> list[lc.Filter]:
    if protocol.is_http:
        security = inbound_http_filters(push, proxy, target)
        route_config = inbound_route_config(target)
        hcm = http_connection_manager(
            stat_prefix=stat,
            route_config=route_config,
            security_filters=security,
            telemetry=server_http(push, proxy, target, mtls, protocol == Protocol.GRPC),
            local_reply=denial_replies(push, proxy, target),
            grpc_web=protocol == Protocol.GRPC_WEB,
        )
        set_client_cert_forwarding(hcm, mtls)
        return [lc.Filter(name=HCM_FILTER, typed_config=pack(hcm))]
    name = ClusterKey.inbound(target).name
    logs = server_tcp_logs(push, proxy, target, mtls)
    return [
        *inbound_network_filters(push, proxy, target),
        tcp_proxy_filter(name, [(name, 100)], logs),
    ]


def set_client_cert_forwarding(hcm: hcm_pb2.HttpConnectionManager, mtls: bool) -> None:
    """Istio's inbound XFCC: append the peer's details on mTLS chains, drop it on plaintext."""
    H = hcm_pb2.HttpConnectionManager
    if mtls:
        hcm.forward_client_cert_details = H.APPEND_FORWARD
        details = hcm.set_current_client_cert_details
        details.subject.value = True
        details.dns = True
        details.uri = True
    else:
        hcm.forward_client_cert_details = H.SANITIZE


def _mode_chains(
    name: str,
    mode: str,
    base: lc.FilterChainMatch,
    identity: bool,
    plain: list[lc.Filter],
    mtls: list[lc.Filter],
) -> list[lc.FilterChain]:
    """The chains of one inbound port (or the passthrough) for a PeerAuthentication mode."""
    if not identity:
        # No certificate to serve: plaintext, and STRICT refuses everything.
        blackhole = [tcp_proxy_filter(BLACKHOLE_CLUSTER, [(BLACKHOLE_CLUSTER, 100)])]
        filters = blackhole if mode == STRICT else plain
        return [lc.FilterChain(name=name, filter_chain_match=base, filters=filters)]
    chains = []
    if mode in (STRICT, PERMISSIVE):
        match = lc.FilterChainMatch()
        match.CopyFrom(base)
        match.transport_protocol = "tls"
        if mode == PERMISSIVE:
            match.application_protocols.extend(MESH_SERVER_ALPN)
        chains.append(
            lc.FilterChain(
                name=f"{name}-mtls",
                filter_chain_match=match,
                filters=mtls,
                transport_socket=tls_socket(mesh_server_context()),
            )
        )
    if mode in (PERMISSIVE, DISABLE):
        match = lc.FilterChainMatch()
        match.CopyFrom(base)
        if mode == PERMISSIVE:
            match.transport_protocol = "raw_buffer"
        chains.append(lc.FilterChain(name=name, filter_chain_match=match, filters=plain))
    return chains


def inbound_port_chains(
    push: PushContext,
    proxy: Proxy,
    policy: MtlsPolicy,
    target: int,
    protocol: Protocol,
    stat: str,
    *,
    match_port: bool,
) -> list[lc.FilterChain]:
    """Filter chains for traffic to app port ``target`` under ``policy``."""
    base = lc.FilterChainMatch()
    if match_port:
        base.destination_port.value = target
    mode = policy.for_port(target)
    tls = ingress_tls(proxy, target)
    if tls is not None and (
        mode == DISABLE or (mode != STRICT and not has_workload_identity(proxy.labels))
    ):
        return [_ingress_tls_chain(push, proxy, target, protocol, stat, base, tls)]
    return _mode_chains(
        ClusterKey.inbound(target).name,
        policy.for_port(target),
        base,
        has_workload_identity(proxy.labels),
        _inbound_filters(push, proxy, target, protocol, stat),
        _inbound_filters(push, proxy, target, protocol, stat, mtls=True),
    )


def ingress_tls(proxy: Proxy, target: int) -> ServerTLSSettings | None:
    """The ``tls`` of the Sidecar ``ingress`` listener on port ``target``, if any."""
    ingress = proxy.scope.ingress if proxy.scope is not None else ()
    return next((i.tls for i in ingress if i.port == target), None)


def _ingress_tls_chain(
    push: PushContext,
    proxy: Proxy,
    target: int,
    protocol: Protocol,
    stat: str,
    base: lc.FilterChainMatch,
    tls: ServerTLSSettings,
) -> lc.FilterChain:
    """A Sidecar ``ingress[].tls`` port where mesh mTLS is off: one chain that matches TLS
    only (plaintext finds no chain and is closed, as Istio) and terminates it with the
    settings' certificate files; the decrypted stream is served as HTTP or TCP
    (``protocol`` is already the one after termination). Under ``MUTUAL`` the verified
    client certificate is the peer's, forwarded in ``x-forwarded-client-cert`` as on mesh
    mTLS chains."""
    ctx, _ = server_tls_context(tls)
    if not protocol.is_http:
        del ctx.common_tls_context.alpn_protocols[:]
    match = lc.FilterChainMatch()
    match.CopyFrom(base)
    match.transport_protocol = "tls"
    return lc.FilterChain(
        name=ClusterKey.inbound(target).name,
        filter_chain_match=match,
        filters=_inbound_filters(push, proxy, target, protocol, stat, mtls=tls.mode == "MUTUAL"),
        transport_socket=tls_socket(ctx),
    )


def _after_tls_termination(protocol: Protocol) -> Protocol:
    """Istio's ``AfterTLSTermination``: what a terminated HTTPS or TLS stream carries."""
    if protocol == Protocol.HTTPS:
        return Protocol.HTTP
    if protocol == Protocol.TLS:
        return Protocol.TCP
    return protocol


def served_ports(proxy: Proxy) -> list[tuple[int, Protocol]]:
    """The inbound ports of ``proxy`` with their protocol: its Sidecar's ``ingress`` ports
    when it has any (as Istio, they replace the ports of its services), else the app ports of
    the services it serves. An ingress port with ``tls`` carries what its TLS wraps (HTTPS:
    HTTP, TLS: TCP), as Istio."""
    ingress = proxy.scope.ingress if proxy.scope is not None else ()
    if ingress:
        ports = []
        for i in ingress:
            protocol = parse_protocol(i.protocol) or select_protocol(i.name)
            if i.tls is not None:
                protocol = _after_tls_termination(protocol)
            ports.append((i.port, protocol))
        return sorted(ports)
    out: dict[int, Protocol] = {}
    for inst in proxy.instances:
        prev = out.get(inst.target_port)
        # HTTP wins when two services name the same app port differently.
        if prev is None or (inst.port.protocol.is_http and not prev.is_http):
            out[inst.target_port] = inst.port.protocol
    return sorted(out.items())


def inbound_policy(push: PushContext, proxy: Proxy) -> MtlsPolicy:
    """The PeerAuthentication that applies to ``proxy``'s workload."""
    return workload_policy(push, proxy.namespace, proxy.labels)


def virtual_inbound(push: PushContext, proxy: Proxy) -> Listener:
    policy = inbound_policy(push, proxy)
    identity = has_workload_identity(proxy.labels)
    chains: list[lc.FilterChain] = []
    for target, protocol in served_ports(proxy):
        stat = f"inbound_0.0.0.0_{target}"
        chains += inbound_port_chains(push, proxy, policy, target, protocol, stat, match_port=True)
    passthrough = [
        tcp_proxy_filter(INBOUND_PASSTHROUGH_CLUSTER, [(INBOUND_PASSTHROUGH_CLUSTER, 100)])
    ]
    listener = Listener(
        name=VIRTUAL_INBOUND,
        address=socket_address("0.0.0.0", INBOUND_CAPTURE),
        listener_filters=[_original_dst()],
        filter_chains=chains,
        traffic_direction=base_pb2.INBOUND,
    )
    if identity and policy.mode != DISABLE:
        # No default chain: what matches none of these (plaintext under STRICT) is closed.
        listener.filter_chains.extend(
            _mode_chains(
                INBOUND_PASSTHROUGH_CLUSTER,
                policy.mode,
                lc.FilterChainMatch(),
                True,
                passthrough,
                passthrough,
            )
        )
    else:
        listener.default_filter_chain.CopyFrom(
            _mode_chains(
                INBOUND_PASSTHROUGH_CLUSTER,
                policy.mode,
                lc.FilterChainMatch(),
                identity,
                passthrough,
                passthrough,
            )[0]
        )
    if inspects_tls(list(listener.filter_chains)):
        listener.listener_filters.append(tls_inspector())
    return listener


def explicit_inbound(push: PushContext, proxy: Proxy) -> list[Listener]:
    """NONE mode: one listener per served app port that has an ``inbound_ports`` entry, on
    the workload's address, or on the ``bind`` of the Sidecar ``ingress`` listener of that
    port (Istio binds a real listener there when traffic is not captured)."""
    policy = inbound_policy(push, proxy)
    ingress = proxy.scope.ingress if proxy.scope is not None else ()
    binds = {i.port: i.bind for i in ingress if i.bind}
    out = []
    for target, protocol in served_ports(proxy):
        bind = proxy.node.inbound_ports.get(target)
        if bind is None:
            continue
        address = binds.get(target) or proxy.ip
        name = f"{address}_{bind}"
        chains = inbound_port_chains(
            push, proxy, policy, target, protocol, f"inbound_{name}", match_port=False
        )
        out.append(
            Listener(
                name=name,
                address=socket_address(address, bind),
                listener_filters=[tls_inspector()] if inspects_tls(chains) else [],
                filter_chains=chains,
                traffic_direction=base_pb2.INBOUND,
            )
        )
    return out


# ---- gateways ---------------------------------------------------------------------------------

GATEWAY_HTTP_PROTOCOLS = ("HTTP", "HTTP2", "GRPC", "GRPC-WEB")


def gateway_servers(
    push: PushContext, proxy: Proxy
) -> dict[int, list[tuple[GatewayConfig, Server]]]:
    """HTTP servers of the gateways selecting this router, by bound port
    (``gateway_ports[server port]``, else the server port)."""
    out: dict[int, list[tuple[GatewayConfig, Server]]] = {}
    for gw in push.gateways_for(proxy.labels):
        for server in gw.servers:
            protocol = (server.port.protocol or "HTTP").upper()
            if protocol not in GATEWAY_HTTP_PROTOCOLS:
                continue
            number = server.port.number or 0
            bind = proxy.node.gateway_ports.get(number, number)
            out.setdefault(bind, []).append((gw, server))
    return out


#: Gateway server protocols that are forwarded as TCP (Istio's non-HTTP, non-TLS protocols).
GATEWAY_TCP_PROTOCOLS = ("TCP", "MONGO", "MYSQL", "REDIS")


def gateway_tcp_servers(
    push: PushContext, proxy: Proxy
) -> dict[int, list[tuple[GatewayConfig, Server]]]:
    """TCP servers of the gateways selecting this router, by bound port."""
    out: dict[int, list[tuple[GatewayConfig, Server]]] = {}
    for gw in push.gateways_for(proxy.labels):
        for server in gw.servers:
            if (server.port.protocol or "").upper() not in GATEWAY_TCP_PROTOCOLS:
                continue
            number = server.port.number or 0
            bind = proxy.node.gateway_ports.get(number, number)
            out.setdefault(bind, []).append((gw, server))
    return out


def gateway_tcp_filter_chain(
    push: PushContext, proxy: Proxy, servers: list[tuple[GatewayConfig, Server]]
) -> lc.FilterChain | None:
    """The chain of the TCP servers of one bound port: ``tcp_proxy`` to the first ``tcp``
    rule bound to one of them (Istio merges the servers of a port, the first one wins);
    None when no rule applies, so the port accepts no connection."""
    for gw, server in servers:
        clusters = gateway_tcp_clusters(push, gw, server)
        if clusters:
            stat = f"outbound_0.0.0.0_{server.port.number or 0}"
            logs = client_tcp_logs(push, proxy)
            return lc.FilterChain(
                name=f"tcp:{gw.ref}:{server.port.name or server.port.number}",
                filters=[tcp_proxy_filter(stat, clusters, logs)],
            )
    return None


def gateway_tls_filter_chains(
    push: PushContext, proxy: Proxy, bind_port: int
) -> list[lc.FilterChain]:
    """Filter chains for HTTPS/TLS servers on ``bind_port`` (see ``gateway_tls``)."""
    return tls_filter_chains(push, proxy, bind_port)


def gateway_listeners(push: PushContext, proxy: Proxy) -> list[Listener]:
    http = gateway_servers(push, proxy)
    tls = gateway_tls_servers(push, proxy)
    tcp = gateway_tcp_servers(push, proxy)
    out = []
    for bind in sorted(set(http) | set(tls) | set(tcp)):
        name = f"0.0.0.0_{bind}"
        chains = []
        if bind in http:
            chains.append(
                lc.FilterChain(
                    filters=[
                        hcm_filter(
                            stat_prefix=f"outbound_{name}",
                            route_config_name=f"http.{bind}",
                            use_remote_address=True,
                            security_filters=inbound_http_filters(push, proxy, bind),
                            telemetry=client_http(push, proxy),
                            local_reply=denial_replies(push, proxy, bind),
                            grpc_web=any(
                                (s.port.protocol or "").upper() == "GRPC-WEB" for _, s in http[bind]
                            ),
                        )
                    ]
                )
            )
        elif bind in tcp and (chain := gateway_tcp_filter_chain(push, proxy, tcp[bind])):
            # HTTP and TCP servers cannot share a port: HTTP wins, as the first chain.
            chains.append(chain)
        chains += gateway_tls_filter_chains(push, proxy, bind)
        if not chains:
            continue
        out.append(
            Listener(
                name=name,
                address=socket_address(proxy.node.bind_address, bind),
                listener_filters=[tls_inspector()] if inspects_tls(chains) else [],
                filter_chains=chains,
                traffic_direction=base_pb2.OUTBOUND,
            )
        )
    return out
