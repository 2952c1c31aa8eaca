"""Gateway servers that speak TLS: HTTPS termination (SIMPLE, MUTUAL) and SNI passthrough.

For a router, every Gateway server with protocol ``HTTPS`` or ``TLS`` becomes one filter chain
on the listener of its bound port (``gateway_ports[server port]``), selected by SNI:
``server_names`` are the server's hosts (a ``*`` host matches any SNI), so several HTTPS hosts
share a port. The listener gets a TLS inspector.

- ``SIMPLE`` / ``MUTUAL`` (and ``OPTIONAL_MUTUAL``): the chain terminates TLS with the
  ``credentialName`` secret (``kubernetes://<name>``, plus ``kubernetes://<name>-cacert`` for
  client certificates; see ``tls.server_tls_context``) and routes with its own route config
  ``https.<port>.<port name>.<gateway>.<namespace>`` (Istio's name), built like the HTTP
  route configs from the VirtualServices bound to the gateway. A server whose credential is
  not available (``PushContext.credentials``: its Secret is missing, unreadable by this
  gateway or broken) is left out until it is, so it never blocks the other servers of the
  port.
- ``PASSTHROUGH``: one chain per ``tls`` rule of the bound VirtualServices, matched on its
  ``sniHosts``, forwarding the still-encrypted stream with ``tcp_proxy`` to the rule's
  destinations.

Translation only names the secrets; which Secrets a gateway may read (its own namespace, then
its Gateways') is the xDS secrets generator's rule (``pilotfish.xds.secrets``).
"""

from __future__ import annotations

from dataclasses import dataclass

from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from pilotfish.api.hosts import host_matches, split_server_host
from pilotfish.api.networking import Server, ServerTLSSettings
from pilotfish.model.config import GatewayConfig
from pilotfish.model.proxy import Proxy
from pilotfish.model.push_context import PushContext
from pilotfish.translate.common import ClusterKey, pack
from pilotfish.translate.filters import HCM_FILTER, http_connection_manager, inbound_http_filters
from pilotfish.translate.observability import client_http
from pilotfish.translate.tls import server_tls_context, tls_socket

TLS_PROTOCOLS = ("HTTPS", "TLS")
TERMINATING_MODES = ("SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL")


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
            if mode in TERMINATING_MODES:
                if protocol != "HTTPS":
                    continue  # TLS termination to TCP routes is not supported
                _, names = server_tls_context(tls)
                if not all(credentials.available(proxy.node, n) for n in names):
                    continue
                route_name = https_route_name(number, port.name or "", gw)
            elif mode != "PASSTHROUGH":
                continue  # AUTO_PASSTHROUGH and ISTIO_MUTUAL are not supported on gateways
            out.setdefault(bind, []).append(
                TlsServer(gw, server, bind, number, mode, route_name, names)
            )
    return out


def _tcp_proxy(clusters: list[tuple[str, int]]) -> lc.Filter:
    tp = tcp_proxy_pb2.TcpProxy(stat_prefix=clusters[0][0])
    if len(clusters) == 1:
        tp.cluster = clusters[0][0]
    else:
        for name, weight in clusters:
            tp.weighted_clusters.clusters.add(name=name, weight=weight)
    return lc.Filter(name="envoy.filters.network.tcp_proxy", typed_config=pack(tp))


def _passthrough_routes(
    push: PushContext, ts: TlsServer
) -> list[tuple[list[str], list[tuple[str, int]]]]:
    """``(sni hosts, weighted clusters)`` from the ``tls`` rules bound to this server."""
    suffix = push.settings.domain_suffix
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
                dests = rule.route
                clusters = []
                for d in dests:
                    dest = d.destination
                    host = vs.resolve(dest.host, suffix)
                    dport = (dest.port.number if dest.port is not None else None) or ts.port
                    weight = d.weight or (100 if len(dests) == 1 else 0)
                    if weight > 0:
                        name = ClusterKey.outbound(dport, dest.subset or "", host).name
                        clusters.append((name, weight))
                if clusters:
                    out.append((snis, clusters))
    return out


def tls_filter_chains(push: PushContext, proxy: Proxy, bind: int) -> list[lc.FilterChain]:
    """The filter chains of the TLS servers bound to ``bind``; the first server to claim a
    set of SNI names keeps it (Envoy refuses duplicate matches)."""
    chains: list[lc.FilterChain] = []
    seen: set[frozenset[str]] = set()

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
                        filters=[_tcp_proxy(clusters)],
                    )
                )
            continue
        ctx, _ = server_tls_context(ts.server.tls or ServerTLSSettings())
        hcm = http_connection_manager(
            stat_prefix=f"outbound_0.0.0.0_{bind}",
            route_config_name=ts.route_name,
            use_remote_address=True,
            security_filters=inbound_http_filters(push, proxy, bind),
            telemetry=client_http(push, proxy),
        )
        add(
            lc.FilterChain(
                name=ts.route_name,
                filter_chain_match=lc.FilterChainMatch(
                    server_names=server_sni_names(ts.hosts, ts.gateway.namespace),
                    transport_protocol="tls",
                ),
                filters=[lc.Filter(name=HCM_FILTER, typed_config=pack(hcm))],
                transport_socket=tls_socket(ctx),
            )
        )
    return chains


__all__ = [
    "TlsServer",
    "gateway_tls_servers",
    "https_route_name",
    "server_sni_names",
    "tls_filter_chains",
]
