"""VirtualService ``tcp`` and ``tls`` rules: which rule applies, and its weighted clusters.

Istio's L4 routing, shared by sidecars and gateways:

- a rule's destinations become ``(cluster, weight)`` pairs; a destination without a port
  takes the service's only port, else the port of the listener (Istio's
  ``GetDestinationCluster``); destinations of weight 0 are left out, and a single
  destination takes all the traffic whatever its weight;
- on a sidecar, a ``tcp`` match applies when it is bound to the mesh gateway and its
  ``port``, ``destinationSubnets`` (the service VIP lies in one of them), ``sourceLabels``,
  ``sourceNamespace`` and ``sourceSubnet`` (the calling proxy's address lies in it) hold for
  the connection and the calling proxy;
- on a sidecar, a ``tls`` rule applies to TLS traffic (ports of protocol ``TLS``/``HTTPS``)
  whose SNI is one of the match's ``sniHosts``, with the same ``port``, subnet, source
  label and namespace conditions; TLS traffic no rule takes follows the ``tcp`` rules;
- on a gateway (Istio's ``l4MultiMatch``), a ``tcp`` rule applies to a server when one of its
  matches names the gateway (or has none, the VirtualService's ``gateways`` then) and the
  server's port (or no port); the VirtualService's hosts must intersect the server's hosts
  as for HTTP.

The first rule that applies wins; a connection no rule takes goes to the service itself
(sidecars) or is not accepted (gateways).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from pilotfish.api.hosts import MESH_GATEWAY, host_matches, split_server_host
from pilotfish.api.mesh import visible
from pilotfish.api.networking import Server
from pilotfish.api.virtualservice import L4MatchAttributes, RouteDestination
from pilotfish.model.config import GatewayConfig, VirtualServiceConfig
from pilotfish.model.proxy import Proxy
from pilotfish.model.push_context import PushContext
from pilotfish.registry.types import Service
from pilotfish.translate.common import ClusterKey

#: ``(cluster name, weight)``: what a ``tcp_proxy`` forwards to.
WeightedClusters = list[tuple[str, int]]


def destination_port(push: PushContext, host: str, port: int | None, listener_port: int) -> int:
    """Istio's GetDestinationCluster port: the destination's, else the service's only port,
    else the listener's."""
    if port:
        return port
    svc = push.service(host)
    if svc is not None and len(svc.ports) == 1:
        return svc.ports[0].port
    return listener_port


def l4_destinations(
    push: PushContext,
    vs: VirtualServiceConfig,
    routes: Sequence[RouteDestination],
    listener_port: int,
) -> WeightedClusters:
    """The weighted clusters of a ``tcp``/``tls`` rule's ``route``."""
    suffix = push.settings.domain_suffix
    out: WeightedClusters = []
    for d in routes:
        dest = d.destination
        weight = d.weight or (100 if len(routes) == 1 else 0)
        if weight <= 0:
            continue
        host = vs.resolve(dest.host, suffix)
        number = dest.port.number if dest.port is not None else None
        port = destination_port(push, host, number, listener_port)
        out.append((ClusterKey.outbound(port, dest.subset or "", host).name, weight))
    return out


def _in_subnets(address: str | None, subnets: Sequence[str]) -> bool:
    if not subnets:
        return True
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    for subnet in subnets:
        try:
            if ip in ipaddress.ip_network(subnet, strict=False):
                return True
        except ValueError:
            continue
    return False


def source_subnet_key(push: PushContext, proxy: Proxy) -> str:
    """The part of a proxy's address that can change its TCP routes: the address itself when
    some ``tcp`` match has a ``sourceSubnet``, else nothing (proxies share listeners)."""

    def compute() -> bool:
        return any(m.sourceSubnet for vs in push.virtual_services for r in vs.tcp for m in r.match)

    return proxy.ip if push.memo(("uses_source_subnet",), compute) else ""


def _sidecar_tcp_applies(
    vs: VirtualServiceConfig, match: L4MatchAttributes, svc: Service, port: int, proxy: Proxy
) -> bool:
    if MESH_GATEWAY not in vs.match_gateways(match):
        return False
    if match.port and match.port != port:
        return False
    address = svc.vip or (svc.addresses[0].partition("/")[0] if svc.addresses else None)
    if not _in_subnets(address, match.destinationSubnets):
        return False
    if match.sourceNamespace and match.sourceNamespace != proxy.namespace:
        return False
    if match.sourceSubnet and not _in_subnets(proxy.ip, [match.sourceSubnet]):
        return False
    return all(proxy.labels.get(k) == v for k, v in match.sourceLabels.items())


def sidecar_tcp_clusters(
    push: PushContext, proxy: Proxy, svc: Service, port: int
) -> WeightedClusters:
    """Weighted clusters for a sidecar's TCP traffic to ``svc:port`` (the first ``tcp`` rule
    of the service's VirtualService that applies, else the service itself)."""
    default = [(ClusterKey.outbound(port, "", svc.hostname).name, 100)]
    vs = push.mesh_virtual_service(svc.hostname, proxy.namespace)
    if vs is None:
        return default
    for rule in vs.tcp:
        matches = rule.match or [L4MatchAttributes()]
        if not any(_sidecar_tcp_applies(vs, m, svc, port, proxy) for m in matches):
            continue
        out = l4_destinations(push, vs, rule.route, port)
        if out:
            return out
    return default


def sidecar_tls_routes(
    push: PushContext, proxy: Proxy, svc: Service, port: int
) -> list[tuple[list[str], WeightedClusters]]:
    """``(sni hosts, weighted clusters)`` of the ``tls`` rules a sidecar applies to TLS
    traffic to ``svc:port``, first rule first; an SNI host already taken by an earlier rule
    stays with it (Envoy refuses two chains with the same match)."""
    vs = push.mesh_virtual_service(svc.hostname, proxy.namespace)
    if vs is None:
        return []
    address = svc.vip or (svc.addresses[0].partition("/")[0] if svc.addresses else None)
    taken: set[str] = set()
    out: list[tuple[list[str], WeightedClusters]] = []
    for rule in vs.tls:
        for m in rule.match:
            if MESH_GATEWAY not in vs.match_gateways(m):
                continue
            if m.port and m.port != port:
                continue
            if not _in_subnets(address, m.destinationSubnets):
                continue
            if m.sourceNamespace and m.sourceNamespace != proxy.namespace:
                continue
            if any(proxy.labels.get(k) != v for k, v in m.sourceLabels.items()):
                continue
            snis = [h for h in m.sniHosts if h not in taken]
            clusters = l4_destinations(push, vs, rule.route, port)
            if snis and clusters:
                taken.update(snis)
                out.append((snis, clusters))
    return out


def server_hosts_match(vs: VirtualServiceConfig, gateway: GatewayConfig, server: Server) -> bool:
    """Whether the VirtualService's hosts intersect the server's (``ns/host`` rules included),
    as for the HTTP routes of a gateway."""
    for server_host in server.hosts:
        ns, pattern = split_server_host(server_host, gateway.namespace)
        if ns not in ("*", vs.namespace):
            continue
        if ns == "*" and not visible(vs.export_to, vs.namespace, gateway.namespace):
            continue
        if any(host_matches(pattern, h) or host_matches(h, pattern) for h in vs.hosts):
            return True
    return False


def _gateway_l4_match(
    vs: VirtualServiceConfig, matches: Sequence[L4MatchAttributes], gateway: str, port: int
) -> bool:
    """Istio's l4MultiMatch: any match whose port and gateways hold; no match at all holds."""
    if not matches:
        return gateway in vs.gateways
    return any((not m.port or m.port == port) and gateway in vs.match_gateways(m) for m in matches)


def gateway_tcp_clusters(
    push: PushContext, gateway: GatewayConfig, server: Server
) -> WeightedClusters:
    """Weighted clusters for a gateway server's TCP traffic: the first ``tcp`` rule of the
    VirtualServices bound to the gateway that applies to the server; empty when none does."""
    port = server.port.number or 0
    for vs in push.virtual_services_for_gateway(gateway.ref):
        if not server_hosts_match(vs, gateway, server):
            continue
        for rule in vs.tcp:
            if not _gateway_l4_match(vs, rule.match, gateway.ref, port):
                continue
            out = l4_destinations(push, vs, rule.route, port)
            if out:
                return out
    return []


__all__ = [
    "WeightedClusters",
    "destination_port",
    "gateway_tcp_clusters",
    "l4_destinations",
    "server_hosts_match",
    "sidecar_tcp_clusters",
    "sidecar_tls_routes",
]
