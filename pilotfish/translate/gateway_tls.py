"""Gateway servers that speak TLS: termination (SIMPLE, MUTUAL, ISTIO_MUTUAL), SNI
passthrough and AUTO_PASSTHROUGH.

For a router, every Gateway server with protocol ``HTTPS`` or ``TLS`` becomes filter chains
on the listener of its bound port (``gateway_ports[server port]``), selected by SNI:
``server_names`` are the server's hosts (a ``*`` host matches any SNI), so several HTTPS hosts
share a port. The listener gets a TLS inspector.

- ``SIMPLE`` / ``MUTUAL`` (and ``OPTIONAL_MUTUAL``): the chain terminates TLS with the
  ``credentialName`` secret (``kubernetes://<name>``, plus ``kubernetes://<name>-cacert`` for
  client certificates; see ``tls.server_tls_context``). A server whose credential is not
  available (``PushContext.credentials``: its Secret is missing, unreadable by this gateway
  or broken) is left out until it is, so it never blocks the other servers of the port.
- ``ISTIO_MUTUAL``: the chain terminates mesh mTLS with the gateway's own workload
  certificate and requires a client certificate from the mesh roots; a gateway without a
  workload identity has no certificate to serve, and leaves the server out.
- A terminating ``HTTPS`` server routes with its own route config
  ``https.<port>.<port name>.<gateway>.<namespace>`` (Istio's name), built like the HTTP
  route configs from the VirtualServices bound to the gateway; a terminating ``TLS`` server
  forwards the decrypted stream with ``tcp_proxy`` by the bound ``tcp`` rules, as Istio does.
- ``PASSTHROUGH``: one chain per ``tls`` rule of the bound VirtualServices, matched on its
  ``sniHosts``, forwarding the still-encrypted stream with ``tcp_proxy`` to the rule's
  destinations.
- ``AUTO_PASSTHROUGH``: one chain for the server's hosts whose ``sni_cluster`` filter sends
  the still-encrypted stream to the cluster the SNI names, Istio's
  ``outbound_.<port>_.<subset>_.<host>``; the generator adds those clusters to the router
  (copies of the outbound clusters without the gateway's own TLS: the client's TLS reaches
  the endpoint). Needs no VirtualService.

Translation only names the secrets; which Secrets a gateway may read (its own namespace, then
its Gateways') is the xDS secrets generator's rule (``pilotfish.xds.secrets``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from envoy.config.accesslog.v3 import accesslog_pb2 as al
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.extensions.filters.network.sni_cluster.v3 import sni_cluster_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from pilotfish.api.hosts import host_matches, split_server_host
from pilotfish.api.networking import Server, ServerTLSSettings
from pilotfish.model.config import GatewayConfig
from pilotfish.model.proxy import Proxy
from pilotfish.model.push_context import PushContext
from pilotfish.translate.common import BLACKHOLE_CLUSTER, ClusterKey, pack
from pilotfish.translate.denials import denial_replies
from pilotfish.translate.filters import HCM_FILTER, http_connection_manager, inbound_http_filters
from pilotfish.translate.observability import client_http, client_tcp_logs
from pilotfish.translate.tcp_routes import gateway_tcp_clusters, l4_destinations
from pilotfish.translate.tls import (
    has_workload_identity,
    istio_sni,
    server_tls_context,
    tls_socket,
)

TLS_PROTOCOLS = ("HTTPS", "TLS")
TERMINATING_MODES = ("SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL", "ISTIO_MUTUAL")
SNI_CLUSTER_FILTER = "envoy.filters.network.sni_cluster"


@dataclass(frozen=True)
class TlsServer:
    """One TLS-speaking Gateway server as a router serves it."""

    gateway: GatewayConfig
    server: Server
    bind: int
    port: int
    mode: str
    #: Route config of a terminated HTTPS server ("" for passthrough and TLS).
    route_name: str
    #: ``kubernetes://...`` secrets its TLS context names.
    credentials: tuple[str, ...]

    @property
    def hosts(self) -> list[str]:
        return list(self.server.hosts)


def https_route_name(port: int, port_name: str, gateway: GatewayConfig) -> str:
    return f"https.{port}.{port_name}.{gateway.key.name}.{gateway.namespace}"


def gateway_of_route_name(name: str) -> str:
    """The ``namespace/name`` of the Gateway an HTTPS server's route configuration was made
    for (:func:`https_route_name`; Istio's ``ParseGatewayRDSRouteName``), empty for any
    other route configuration (``http.<port>`` serves every Gateway bound to the port)."""
    parts = name.split(".")
    if not name.startswith("https.") or len(parts) < 5:
        return ""
    return f"{parts[4]}/{parts[3]}"


def server_sni_names(hosts: list[str], gateway_ns: str) -> list[str]:
    """``server_names`` for a server's hosts; empty (any SNI) when a host is ``*``."""
    names: list[str] = []
    for host in hosts:
        _, pattern = split_server_host(host, gateway_ns)
        if pattern == "*":
            return []
        if pattern not in names:
            names.append(pattern)
    return names


def gateway_tls_servers(push: PushContext, proxy: Proxy) -> dict[int, list[TlsServer]]:
    """HTTPS/TLS servers of the gateways selecting this router, by bound port. Terminating
    servers whose credentials are not available are left out."""
    gateways = list(push.gateways_for(proxy.labels))
    credentials = push.credentials
    out: dict[int, list[TlsServer]] = {}
    for gw in gateways:
        for server in gw.servers:
            port = server.port
            protocol = (port.protocol or "").upper()
            if protocol not in TLS_PROTOCOLS:
                continue
            tls = server.tls or ServerTLSSettings()
            mode = tls.mode or "SIMPLE"
            number = port.number or 0
            bind = proxy.node.gateway_ports.get(number, number)
            route_name = ""
            names: tuple[str, ...] = ()
            if mode == "ISTIO_MUTUAL":
                if not has_workload_identity(proxy.labels):
                    continue
            elif mode in TERMINATING_MODES:
                _, names = server_tls_context(tls)
                if not all(credentials.available(proxy.node, n) for n in names):
                    continue
            elif mode not in ("PASSTHROUGH", "AUTO_PASSTHROUGH"):
                continue
            if mode in TERMINATING_MODES and protocol == "HTTPS":
                route_name = https_route_name(number, port.name or "", gw)
            out.setdefault(bind, []).append(
                TlsServer(gw, server, bind, number, mode, route_name, names)
            )
    return out


def _tcp_proxy(clusters: list[tuple[str, int]], logs: Sequence[al.AccessLog]) -> lc.Filter:
    """``tcp_proxy`` to weighted clusters, with Istio's TCP metrics (``logs``) as the
    gateway's TCP servers have them."""
    tp = tcp_proxy_pb2.TcpProxy(stat_prefix=clusters[0][0])
    if len(clusters) == 1:
        tp.cluster = clusters[0][0]
    else:
        for name, weight in clusters:
            tp.weighted_clusters.clusters.add(name=name, weight=weight)
    if logs:
        tp.access_log.extend(logs)
        tp.access_log_options.flush_access_log_on_connected = True
    return lc.Filter(name="envoy.filters.network.tcp_proxy", typed_config=pack(tp))


def _passthrough_routes(
    push: PushContext, ts: TlsServer
) -> list[tuple[list[str], list[tuple[str, int]]]]:
    """``(sni hosts, weighted clusters)`` from the ``tls`` rules bound to this server."""
    out: list[tuple[list[str], list[tuple[str, int]]]] = []
    patterns = [split_server_host(h, ts.gateway.namespace)[1] for h in ts.hosts]
    for vs in push.virtual_services_for_gateway(ts.gateway.ref):
        for rule in vs.tls:
            for match in rule.match:
                if ts.gateway.ref not in vs.match_gateways(match):
                    continue
                if match.port and match.port != ts.port:
                    continue
                snis = [
                    s
                    for s in match.sniHosts
                    if any(host_matches(p, s) or host_matches(s, p) for p in patterns)
                ]
                if not snis:
                    continue
                clusters = l4_destinations(push, vs, rule.route, ts.port)
                if clusters:
                    out.append((snis, clusters))
    return out


def auto_passthrough_cluster(cluster: cluster_pb2.Cluster) -> cluster_pb2.Cluster | None:
    """The ``outbound_.<port>_.<subset>_.<host>`` copy of an outbound cluster that
    AUTO_PASSTHROUGH forwards to: the same endpoints, without the gateway's own TLS."""
    key = ClusterKey.parse(cluster.name)
    if key is None or key.direction != "outbound":
        return None
    out = cluster_pb2.Cluster()
    out.CopyFrom(cluster)
    out.name = istio_sni(key.port, key.subset, key.host)
    out.ClearField("transport_socket")
    out.ClearField("transport_socket_matches")
    return out


def has_auto_passthrough(push: PushContext, proxy: Proxy) -> bool:
    return any(
        ts.mode == "AUTO_PASSTHROUGH"
        for servers in gateway_tls_servers(push, proxy).values()
        for ts in servers
    )


def _server_socket(ts: TlsServer) -> base_pb2.TransportSocket:
    """The transport socket of a terminating server (HTTPS or TLS)."""
    ctx, _ = server_tls_context(ts.server.tls or ServerTLSSettings())
    if (ts.server.port.protocol or "").upper() != "HTTPS":
        del ctx.common_tls_context.alpn_protocols[:]
    return tls_socket(ctx)


def tls_filter_chains(push: PushContext, proxy: Proxy, bind: int) -> list[lc.FilterChain]:
    """The filter chains of the TLS servers bound to ``bind``; the first server to claim a
    set of SNI names keeps it (Envoy refuses duplicate matches)."""
    chains: list[lc.FilterChain] = []
    seen: set[frozenset[str]] = set()
    logs = client_tcp_logs(push, proxy)

    def add(chain: lc.FilterChain) -> None:
        key = frozenset(chain.filter_chain_match.server_names)
        if key in seen:
            return
        seen.add(key)
        chains.append(chain)

    for ts in gateway_tls_servers(push, proxy).get(bind, []):
        if ts.mode == "PASSTHROUGH":
            for snis, clusters in _passthrough_routes(push, ts):
                add(
                    lc.FilterChain(
                        name=f"passthrough:{ts.gateway.ref}:{','.join(snis)}",
                        filter_chain_match=lc.FilterChainMatch(
                            server_names=snis, transport_protocol="tls"
                        ),
                        filters=[_tcp_proxy(clusters, logs)],
                    )
                )
            continue
        sni_match = lc.FilterChainMatch(
            server_names=server_sni_names(ts.hosts, ts.gateway.namespace),
            transport_protocol="tls",
        )
        if ts.mode == "AUTO_PASSTHROUGH":
            # tcp_proxy's cluster is replaced by the SNI (``sni_cluster``).
            tp = tcp_proxy_pb2.TcpProxy(stat_prefix=BLACKHOLE_CLUSTER, cluster=BLACKHOLE_CLUSTER)
            add(
                lc.FilterChain(
                    name=f"auto-passthrough:{ts.gateway.ref}:{ts.port}",
                    filter_chain_match=sni_match,
                    filters=[
                        lc.Filter(
                            name=SNI_CLUSTER_FILTER, typed_config=pack(sni_cluster_pb2.SniCluster())
                        ),
                        lc.Filter(name="envoy.filters.network.tcp_proxy", typed_config=pack(tp)),
                    ],
                )
            )
            continue
        socket = _server_socket(ts)
        if not ts.route_name:
            # TLS terminated into the bound ``tcp`` rules.
            clusters = gateway_tcp_clusters(push, ts.gateway, ts.server)
            if clusters:
                add(
                    lc.FilterChain(
                        name=f"tls:{ts.gateway.ref}:{ts.server.port.name or ts.port}",
                        filter_chain_match=sni_match,
                        filters=[_tcp_proxy(clusters, logs)],
                        transport_socket=socket,
                    )
                )
            continue
        hcm = http_connection_manager(
            stat_prefix=f"outbound_0.0.0.0_{bind}",
            route_config_name=ts.route_name,
            use_remote_address=True,
            security_filters=inbound_http_filters(push, proxy, bind),
            telemetry=client_http(push, proxy),
            local_reply=denial_replies(push, proxy, bind),
        )
        add(
            lc.FilterChain(
                name=ts.route_name,
                filter_chain_match=sni_match,
                filters=[lc.Filter(name=HCM_FILTER, typed_config=pack(hcm))],
                transport_socket=socket,
            )
        )
    return chains


__all__ = [
    "TlsServer",
    "auto_passthrough_cluster",
    "gateway_of_route_name",
    "gateway_tls_servers",
    "has_auto_passthrough",
    "https_route_name",
    "server_sni_names",
    "tls_filter_chains",
]
