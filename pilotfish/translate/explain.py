"""Explain one request without sending it: walk it through the Envoy config a proxy gets.

``explain_client(resources, request)`` follows what the client's Envoy does with the request,
on the generated protos (the same ones the control plane sends): the outbound listener and
filter chain, the HTTP connection manager's route configuration, the virtual host (Envoy's
domain order: exact, longest ``*.suffix``, longest ``prefix.*``, ``*``), the first route whose
path, header and query matchers match, its action (cluster or weighted clusters, timeout,
retries, fault injection, mirrors, direct responses and redirects), the cluster, its client
TLS and its endpoints. ``explain_server(resources, request, peer, address)`` follows the
destination's Envoy: the inbound listener and filter chain (plaintext or mTLS), JWT
authentication (``jwt_authn`` providers; a token is read, not verified), and the RBAC filters
in order (Envoy's semantics: a DENY filter denies when a policy matches, an ALLOW filter
denies when none does), naming the policy and rule that decided (Pilotfish names RBAC policies
``ns[NS]-policy[NAME]-rule[I]``).

Everything is pure. What the explainer cannot evaluate from config alone (regexes Envoy's RE2
reads differently aside, runtime fractions, external authorization) is reported as such in
the step, never guessed silently.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.rbac.v3 import rbac_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.ext_authz.v3 import ext_authz_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from envoy.extensions.filters.network.ext_authz.v3 import ext_authz_pb2 as net_ext_authz_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as net_rbac_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2 as tls_context_pb2
from envoy.type.matcher.v3 import metadata_pb2, string_pb2
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message

from pilotfish.api.hosts import resolve_host
from pilotfish.api.node import NodeInfo
from pilotfish.api.typeurls import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    VIRTUAL_HOST_TYPE,
)
from pilotfish.model.push_context import PushContext
from pilotfish.translate.generator import generate
from pilotfish.translate.peer_authn import workload_policy
from pilotfish.translate.route_configs import merge_vhds

__all__ = [
    "ClientPath",
    "ExplainRequest",
    "Peer",
    "ServerPath",
    "Step",
    "explain_client",
    "explain_request",
    "explain_server",
    "subset_of",
]

Resources = Mapping[str, Mapping[str, Message]]

HCM = "envoy.filters.network.http_connection_manager"
TCP_PROXY = "envoy.filters.network.tcp_proxy"
RBAC_HTTP = "envoy.filters.http.rbac"
JWT_AUTHN = "envoy.filters.http.jwt_authn"
FAULT = "envoy.filters.http.fault"
EXT_AUTHZ = "envoy.filters.http.ext_authz"
RBAC_NETWORK = "envoy.filters.network.rbac"
EXT_AUTHZ_NETWORK = "envoy.filters.network.ext_authz"
#: Stat prefix of the shadow RBAC that marks the requests CUSTOM policies send to ext_authz.
EXT_AUTHZ_SHADOW_PREFIX = "istio_ext_authz_"


@dataclass(frozen=True)
class ExplainRequest:
    """The request: method, URL and headers (names lowercased)."""

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def parts(self) -> Any:
        return urlsplit(self.url if "://" in self.url else f"http://{self.url}")

    @property
    def host(self) -> str:
        return (self.parts.hostname or "").lower()

    @property
    def port(self) -> int:
        p = self.parts
        return p.port or (443 if p.scheme == "https" else 80)

    @property
    def authority(self) -> str:
        given = self.headers.get("host") or self.headers.get(":authority")
        if given:
            return given.lower()
        p = self.parts
        return f"{self.host}:{p.port}" if p.port else self.host

    @property
    def scheme(self) -> str:
        """``http``, ``https`` or ``tcp`` (a raw TCP connection, ``tcp://host:port``)."""
        return (self.parts.scheme or "http").lower()

    @property
    def tls(self) -> bool:
        """The client speaks TLS itself (``https://``): the SNI is the URL's host."""
        return self.scheme == "https"

    @property
    def sni(self) -> str | None:
        host = self.host
        if not self.tls or not host:
            return None
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return host
        return None

    @property
    def path(self) -> str:
        """The path with its query, as ``:path``."""
        p = self.parts
        return (p.path or "/") + (f"?{p.query}" if p.query else "")

    @property
    def path_only(self) -> str:
        return self.parts.path or "/"

    @property
    def query(self) -> list[tuple[str, str]]:
        return parse_qsl(self.parts.query, keep_blank_values=True)

    def header(self, name: str) -> str | None:
        name = name.lower()
        pseudo = {
            ":method": self.method.upper(),
            ":path": self.path,
            ":authority": self.authority,
            "host": self.authority,
            ":scheme": "https" if self.tls else "http",
        }
        if name in pseudo:
            return pseudo[name]
        return self.headers.get(name)


@dataclass(frozen=True)
class Step:
    """One stage of the walk: what (``listener``, ``route``...), which object, and details."""

    stage: str
    name: str
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "name": self.name, **self.detail}


@dataclass
class ClientPath:
    steps: list[Step] = field(default_factory=list)
    #: (cluster, weight) the request may go to; one entry with weight 100 when not split.
    clusters: list[tuple[str, int]] = field(default_factory=list)
    #: A status the client's Envoy answers itself (no route, direct response, fault abort).
    local_status: int | None = None
    local_reason: str = ""
    #: Endpoint addresses (``ip:port``) per cluster.
    endpoints: dict[str, list[str]] = field(default_factory=dict)
    #: Per endpoint address: mTLS (True) or plaintext (False), as the cluster picks it.
    mtls: dict[str, bool] = field(default_factory=dict)
    #: What happens to a share of the requests only (faults below 100%), as sentences.
    faults: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Peer:
    """Who the server sees: the client's SPIFFE identity over mTLS (None in plaintext), its
    namespace, and its address."""

    principal: str | None
    namespace: str | None = None
    ip: str = "127.0.0.1"


@dataclass
class ServerPath:
    steps: list[Step] = field(default_factory=list)
    allowed: bool | None = True
    status: int | None = None
    reason: str = ""
    #: ``namespace/policy`` and rule index of the RBAC policy that decided, when one did.
    policy: str | None = None
    rule: int | None = None


# ---------------------------------------------------------------------------- matchers


def _regex_full(pattern: str, value: str) -> bool:
    try:
        return re.fullmatch(pattern, value) is not None
    except re.error:
        return False


def string_matches(m: string_pb2.StringMatcher, value: str | None) -> bool:
    """Envoy's StringMatcher (``ignore_case`` respected); a missing value never matches."""
    if value is None:
        return False
    kind = m.WhichOneof("match_pattern")
    v, ic = value, m.ignore_case
    if kind == "exact":
        return v.lower() == m.exact.lower() if ic else v == m.exact
    if kind == "prefix":
        return v.lower().startswith(m.prefix.lower()) if ic else v.startswith(m.prefix)
    if kind == "suffix":
        return v.lower().endswith(m.suffix.lower()) if ic else v.endswith(m.suffix)
    if kind == "contains":
        return m.contains.lower() in v.lower() if ic else m.contains in v
    if kind == "safe_regex":
        return _regex_full(m.safe_regex.regex, v)
    return False


def header_matches(h: route_components_pb2.HeaderMatcher, request: ExplainRequest) -> bool:
    value = request.header(h.name)
    if value is None and h.treat_missing_header_as_empty:
        value = ""
    kind = h.WhichOneof("header_match_specifier")
    if kind == "present_match":
        result = (value is not None) == h.present_match
    elif value is None:
        result = False
    elif kind == "string_match":
        result = string_matches(h.string_match, value)
    elif kind == "exact_match":
        result = value == h.exact_match
    elif kind == "prefix_match":
        result = value.startswith(h.prefix_match)
    elif kind == "suffix_match":
        result = value.endswith(h.suffix_match)
    elif kind == "contains_match":
        result = h.contains_match in value
    elif kind == "safe_regex_match":
        result = _regex_full(h.safe_regex_match.regex, value)
    else:
        result = True  # no specifier: presence
    return result != h.invert_match if (value is not None or kind != "present_match") else result


def _uri_template_matches(template: str, path: str) -> bool:
    """Envoy's uri_template: ``*`` one segment, ``**`` any suffix."""
    parts = []
    for seg in template.strip("/").split("/"):
        if seg == "**":
            parts.append(".*")
        elif seg == "*":
            parts.append("[^/]+")
        else:
            parts.append(re.escape(seg))
    return re.fullmatch("/" + "/".join(parts), path) is not None


def route_matches(match: route_components_pb2.RouteMatch, request: ExplainRequest) -> bool:
    path = request.path_only
    kind = match.WhichOneof("path_specifier")
    cs = not match.HasField("case_sensitive") or match.case_sensitive.value
    p, cmp = (path, lambda s: s) if cs else (path.lower(), str.lower)
    if kind == "prefix":
        ok = p.startswith(cmp(match.prefix))
    elif kind == "path":
        ok = p == cmp(match.path)
    elif kind == "safe_regex":
        ok = _regex_full(match.safe_regex.regex, path)
    elif kind == "path_separated_prefix":
        pre = cmp(match.path_separated_prefix)
        ok = p == pre or p.startswith(pre + "/")
    elif kind == "path_match_policy":
        cfg = match.path_match_policy.typed_config
        ok = True
        if cfg.type_url.endswith("UriTemplateMatchConfig"):
            from envoy.extensions.path.match.uri_template.v3 import uri_template_match_pb2

            t = uri_template_match_pb2.UriTemplateMatchConfig()
            cfg.Unpack(t)
            ok = _uri_template_matches(t.path_template, path)
    else:
        ok = True
    if not ok:
        return False
    if not all(header_matches(h, request) for h in match.headers):
        return False
    query = dict(request.query)
    for q in match.query_parameters:
        value = query.get(q.name)
        if q.HasField("string_match"):
            if not string_matches(q.string_match, value):
                return False
        elif value is None:
            return False
    return True


def _domain_matches(domain: str, authority: str) -> int:
    """A score for Envoy's virtual host order (higher wins), or -1."""
    d = domain.lower()
    if d == authority:
        return 4_000_000
    if d.startswith("*") and d != "*" and authority.endswith(d[1:]):
        return 3_000_000 + len(d)
    if d.endswith("*") and d != "*" and authority.startswith(d[:-1]):
        return 2_000_000 + len(d)
    if d == "*":
        return 1
    return -1


def _duration(d: Duration) -> str:
    secs = d.seconds + d.nanos / 1e9
    return f"{secs:g}s"


def subset_of(cluster: str) -> str:
    """``outbound|9080|v1|reviews...`` -> ``v1`` (empty when not a subset cluster)."""
    parts = cluster.split("|")
    return parts[2] if len(parts) == 4 else ""


# ---------------------------------------------------------------------------- client side


def _unpack(any_msg: Any, msg: Message) -> Message:
    any_msg.Unpack(msg)
    return msg


def _sni_score(server_names: Sequence[str], sni: str | None) -> int:
    """Envoy's server name match: an exact name beats the longest ``*.suffix``; -1 when none
    matches (or the client sent no SNI)."""
    if sni is None:
        return -1
    best = -1
    for name in server_names:
        name = name.lower()
        if name == sni:
            return 1000
        if name.startswith("*.") and sni.endswith(name[1:]) and len(sni) > len(name) - 1:
            best = max(best, len(name))
    return best


def _chain_matches(
    m: listener_components_pb2.FilterChainMatch,
    port: int,
    ip: str | None,
    sni: str | None = None,
    tls: bool = False,
) -> int:
    """A score for the filter chain (more specific wins), or -1. ``tls``: the client opens a
    TLS connection (SNI ``sni``), which only chains for ``tls`` (or any transport) take."""
    score = 0
    if m.HasField("destination_port"):
        if m.destination_port.value != port:
            return -1
        score += 100
    if m.prefix_ranges:
        if ip is None:
            return -1
        addr = ipaddress.ip_address(ip)
        best = -1
        for r in m.prefix_ranges:
            net = ipaddress.ip_network(
                f"{r.address_prefix}/{r.prefix_len.value if r.HasField('prefix_len') else 32}",
                strict=False,
            )
            if addr in net:
                best = max(best, net.prefixlen)
        if best < 0:
            return -1
        score += 10 + best
    if m.transport_protocol == "tls":
        if not tls:
            return -1
        score += 5
    elif m.transport_protocol == "raw_buffer":
        if tls:
            return -1
    elif m.transport_protocol:
        return -1
    if m.server_names:
        sni_score = _sni_score(m.server_names, sni)
        if sni_score < 0:
            return -1
        score += 1 + sni_score
    if m.application_protocols:
        return -1
    return score


def _address(lst: listener_pb2.Listener) -> str:
    sa = lst.address.socket_address
    return f"{sa.address}:{sa.port_value}"


def _outbound_listener(
    resources: Resources,
    port: int,
    ip: str | None,
    sni: str | None = None,
    tls: bool = False,
    bound_only: bool = False,
) -> tuple[listener_pb2.Listener, listener_components_pb2.FilterChain] | None:
    """The listener and chain that take a connection to ``ip:port``: a listener bound to the
    port itself first (gateways, per-port sidecar listeners), else the chains of the proxy's
    outbound listener (explicit mode's outbound port, captured mode's ``virtualOutbound``).
    ``bound_only`` (a gateway, whose listeners bind their ports): only the listener bound to
    the port; when none of its chains takes the connection, Envoy closes it."""
    listeners = resources.get(LISTENER_TYPE, {})
    candidates: list[tuple[int, Any, Any]] = []
    for name, lst in listeners.items():
        assert isinstance(lst, listener_pb2.Listener)
        if lst.traffic_direction == 1 or name.startswith("virtualInbound"):  # INBOUND
            continue
        own_port = 1000 if lst.address.socket_address.port_value == port else 0
        if bound_only and not own_port:
            continue
        for fc in lst.filter_chains:
            s = _chain_matches(fc.filter_chain_match, port, ip, sni, tls)
            if s >= 0:
                candidates.append((s + own_port, lst, fc))
        if lst.HasField("default_filter_chain"):
            candidates.append((own_port - 1, lst, lst.default_filter_chain))
    if not candidates:
        return None
    candidates.sort(key=lambda c: -c[0])
    return candidates[0][1], candidates[0][2]


def _route_config(
    resources: Resources, h: hcm_pb2.HttpConnectionManager
) -> route_pb2.RouteConfiguration | None:
    if h.HasField("route_config"):
        return h.route_config
    rc = resources.get(ROUTE_TYPE, {}).get(h.rds.route_config_name)
    return rc if isinstance(rc, route_pb2.RouteConfiguration) else None


def _vip_of(resources: Resources, host: str, port: int) -> str | None:
    """The address a name resolves to, from the virtual hosts' domains (``10.96.0.5:9080``)."""
    for rc in resources.get(ROUTE_TYPE, {}).values():
        assert isinstance(rc, route_pb2.RouteConfiguration)
        for vh in rc.virtual_hosts:
            domains = [d.lower() for d in vh.domains]
            if host in domains or f"{host}:{port}" in domains:
                for d in domains:
                    try:
                        ipaddress.ip_address(d)
                    except ValueError:
                        continue
                    return d
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None
    return host


def _fault(
    route: route_components_pb2.Route, vh: route_components_pb2.VirtualHost
) -> fault_pb2.HTTPFault | None:
    for holder in (route.typed_per_filter_config, vh.typed_per_filter_config):
        cfg = holder.get(FAULT)
        if cfg is not None:
            return _unpack(cfg, fault_pb2.HTTPFault())
    return None


def _percent(p: Any) -> float:
    denominators = {0: 100, 1: 10_000, 2: 1_000_000}
    return 100.0 * p.numerator / denominators.get(p.denominator, 100)


def _socket_is_tls(ts: Any) -> bool:
    return (
        bool(ts.name)
        and "raw_buffer" not in ts.name
        and ts.typed_config.type_url.endswith("UpstreamTlsContext")
    )


def _endpoint_tls(cluster: cluster_pb2.Cluster, lb: endpoint_pb2.LbEndpoint) -> bool:
    """Envoy's choice of transport socket for one endpoint: the first
    ``transport_socket_matches`` entry whose ``match`` is in the endpoint's
    ``envoy.transport_socket_match`` metadata, else the cluster's socket."""
    meta = lb.metadata.filter_metadata.get("envoy.transport_socket_match")
    fields = dict(meta.fields) if meta is not None else {}
    for m in cluster.transport_socket_matches:
        wanted = dict(m.match.fields)
        if all(k in fields and fields[k] == v for k, v in wanted.items()):
            return _socket_is_tls(m.transport_socket)
    return cluster.HasField("transport_socket") and _socket_is_tls(cluster.transport_socket)


def _cluster_step(resources: Resources, out: ClientPath, name: str) -> None:
    cluster = resources.get(CLUSTER_TYPE, {}).get(name)
    detail: dict[str, Any] = {}
    if isinstance(cluster, cluster_pb2.Cluster):
        detail["type"] = cluster_pb2.Cluster.DiscoveryType.Name(cluster.type)
        if cluster.HasField("connect_timeout"):
            detail["connectTimeout"] = _duration(cluster.connect_timeout)
        eds_name = cluster.eds_cluster_config.service_name or name
        cla = resources.get(ENDPOINT_TYPE, {}).get(eds_name)
        if cla is None and cluster.HasField("load_assignment"):
            cla = cluster.load_assignment
        addrs: list[str] = []
        if isinstance(cla, endpoint_pb2.ClusterLoadAssignment):
            for le in cla.endpoints:
                for lb in le.lb_endpoints:
                    sa = lb.endpoint.address.socket_address
                    addr = f"{sa.address}:{sa.port_value}"
                    addrs.append(addr)
                    out.mtls[addr] = _endpoint_tls(cluster, lb)
        out.endpoints[name] = addrs
        detail["endpoints"] = [
            {"address": a, "tls": "mTLS" if out.mtls.get(a) else "plaintext"} for a in addrs
        ]
    else:
        detail["missing"] = True
        out.endpoints[name] = []
    out.steps.append(Step("cluster", name, detail))


def _downstream_tls(fc: listener_components_pb2.FilterChain) -> dict[str, Any] | None:
    """What a chain that terminates TLS asks of the client: mode (SIMPLE, or MUTUAL when it
    requires a client certificate), the certificates it serves and the CA it checks with."""
    ts = fc.transport_socket
    if not fc.HasField("transport_socket") or not ts.typed_config.type_url.endswith(
        "DownstreamTlsContext"
    ):
        return None
    ctx = tls_context_pb2.DownstreamTlsContext()
    ts.typed_config.Unpack(ctx)
    common = ctx.common_tls_context
    mutual = ctx.require_client_certificate.value
    detail: dict[str, Any] = {
        "serverCertificate": [c.name for c in common.tls_certificate_sds_secret_configs],
    }
    validation = ""
    if common.HasField("validation_context_sds_secret_config"):
        validation = common.validation_context_sds_secret_config.name
    elif common.HasField("combined_validation_context"):
        validation = common.combined_validation_context.validation_context_sds_secret_config.name
    if validation:
        detail["clientCa"] = validation
    if common.alpn_protocols:
        detail["alpn"] = ",".join(common.alpn_protocols)
    detail["mode"] = "MUTUAL" if mutual else "SIMPLE"
    if mutual:
        detail["note"] = (
            "a client certificate signed by the client CA is required (assumed presented)"
        )
    return detail


def explain_client(
    resources: Resources,
    request: ExplainRequest,
    listen_port: int | None = None,
    vip: str | None = None,
    gateway: bool = False,
) -> ClientPath:
    """The client Envoy's walk (see the module docstring). ``listen_port``: the port the
    proxy binds for the request's port (a gateway's ``gateway_ports``), if another; ``vip``:
    the address the host resolves to, when the route configurations do not tell (TCP);
    ``gateway``: the proxy is a gateway (a connection reaches only the listener of its port)."""
    out = ClientPath()
    ip = _vip_of(resources, request.host, request.port) or vip
    found = _outbound_listener(
        resources, listen_port or request.port, ip, request.sni, request.tls, bound_only=gateway
    )
    if found is None:
        out.local_status, out.local_reason = 0, f"no outbound listener for port {request.port}"
        if request.tls:
            out.local_reason += f" that takes a TLS connection with SNI {request.sni or '(none)'}"
        return out
    lst, fc = found
    out.steps.append(
        Step(
            "listener",
            lst.name,
            {"address": _address(lst)},
        )
    )
    chain: dict[str, Any] = {"destinationIp": ip}
    if request.tls:
        chain["sni"] = request.sni
        names = list(fc.filter_chain_match.server_names)
        chain["serverNames"] = ",".join(names) if names else "(any)"
    out.steps.append(Step("filterChain", fc.name or "(default)", chain))
    terminated = _downstream_tls(fc)
    if terminated is not None:
        out.steps.append(Step("tls", terminated.pop("mode"), terminated))
    elif request.tls:
        out.steps.append(
            Step("tls", "PASSTHROUGH", {"note": "the TLS stream is forwarded, not terminated"})
        )
    for f in fc.filters:
        if f.name == TCP_PROXY:
            tp = _unpack(f.typed_config, tcp_proxy_pb2.TcpProxy())
            assert isinstance(tp, tcp_proxy_pb2.TcpProxy)
            if tp.cluster:
                out.clusters = [(tp.cluster, 100)]
            else:
                out.clusters = [(w.name, w.weight) for w in tp.weighted_clusters.clusters]
            out.steps.append(Step("tcpProxy", tp.stat_prefix, {"clusters": dict(out.clusters)}))
            break
        if f.name == HCM:
            h = _unpack(f.typed_config, hcm_pb2.HttpConnectionManager())
            assert isinstance(h, hcm_pb2.HttpConnectionManager)
            _http(resources, out, h, request)
            break
    for name, _ in out.clusters:
        _cluster_step(resources, out, name)
    return out


def _http(
    resources: Resources, out: ClientPath, h: hcm_pb2.HttpConnectionManager, request: ExplainRequest
) -> None:
    rc = _route_config(resources, h)
    if rc is None:
        out.local_status, out.local_reason = 404, "route configuration not found"
        return
    authority = request.authority
    scored = [
        (max((_domain_matches(d, authority) for d in vh.domains), default=-1), i, vh)
        for i, vh in enumerate(rc.virtual_hosts)
    ]
    scored = [s for s in scored if s[0] >= 0]
    if not scored:
        out.steps.append(Step("routeConfig", rc.name, {"virtualHost": None}))
        out.local_status, out.local_reason = (
            404,
            f"no virtual host for {authority} (Envoy answers 404 NR)",
        )
        return
    scored.sort(key=lambda s: (-s[0], s[1]))
    vh = scored[0][2]
    out.steps.append(Step("routeConfig", rc.name, {}))
    out.steps.append(Step("virtualHost", vh.name, {"authority": authority}))
    for index, route in enumerate(vh.routes):
        if not route_matches(route.match, request):
            continue
        if route.match.HasField("runtime_fraction"):
            pct = _percent(route.match.runtime_fraction.default_value)
            if pct < 100:
                out.steps.append(
                    Step("note", "runtimeFraction", {"route": route.name, "percent": pct})
                )
        _route(out, vh, route, index)
        return
    out.local_status, out.local_reason = 404, "no route matches (Envoy answers 404 NR)"
    out.steps.append(Step("route", "(none)", {}))


def _route(out: ClientPath, vh: Any, route: route_components_pb2.Route, index: int) -> None:
    detail: dict[str, Any] = {"index": index, "match": _match_text(route.match)}
    action = route.WhichOneof("action")
    if action == "direct_response":
        out.local_status = route.direct_response.status
        out.local_reason = "direct response"
        detail["directResponse"] = route.direct_response.status
    elif action == "redirect":
        out.local_status = 301
        out.local_reason = "redirect"
        detail["redirect"] = route.redirect.host_redirect or route.redirect.path_redirect
    elif action == "route":
        ra = route.route
        if ra.cluster:
            out.clusters = [(ra.cluster, 100)]
        elif ra.HasField("weighted_clusters"):
            out.clusters = [(c.name, c.weight.value) for c in ra.weighted_clusters.clusters]
        elif ra.cluster_header:
            detail["clusterHeader"] = ra.cluster_header
        detail["clusters"] = dict(out.clusters)
        if ra.HasField("timeout"):
            detail["timeout"] = _duration(ra.timeout)
        if ra.HasField("retry_policy"):
            rp = ra.retry_policy
            detail["retries"] = {
                "attempts": rp.num_retries.value if rp.HasField("num_retries") else 1,
                "retryOn": rp.retry_on,
                **(
                    {"perTryTimeout": _duration(rp.per_try_timeout)}
                    if rp.HasField("per_try_timeout")
                    else {}
                ),
            }
        if ra.request_mirror_policies:
            detail["mirror"] = [
                {
                    "cluster": m.cluster,
                    "percent": _percent(m.runtime_fraction.default_value)
                    if m.HasField("runtime_fraction")
                    else 100.0,
                }
                for m in ra.request_mirror_policies
            ]
        if ra.prefix_rewrite or ra.HasField("regex_rewrite"):
            detail["rewrite"] = ra.prefix_rewrite or ra.regex_rewrite.substitution
    fault = _fault(route, vh)
    if fault is not None:
        f: dict[str, Any] = {}
        if fault.HasField("abort"):
            pct = _percent(fault.abort.percentage)
            status = fault.abort.http_status
            f["abort"] = {"status": status, "percent": pct}
            if pct >= 100 and status:
                out.local_status, out.local_reason = (status, "fault injection abort")
            elif pct > 0 and status:
                out.faults.append(f"{pct:g}% of requests abort with {status}")
        if fault.HasField("delay"):
            pct = _percent(fault.delay.percentage)
            fixed = _duration(fault.delay.fixed_delay)
            f["delay"] = {"fixed": fixed, "percent": pct}
            if pct >= 100:
                out.faults.append(f"every request is delayed by {fixed}")
            elif pct > 0:
                out.faults.append(f"{pct:g}% of requests are delayed by {fixed}")
        detail["fault"] = f
    out.steps.append(Step("route", route.name or f"#{index}", detail))


def _match_text(m: route_components_pb2.RouteMatch) -> str:
    kind = m.WhichOneof("path_specifier")
    plain = kind in ("prefix", "path", "path_separated_prefix")
    text = f"{kind} {getattr(m, kind)}" if kind and plain else (kind or "")
    if kind == "safe_regex":
        text = f"regex {m.safe_regex.regex}"
    for h in m.headers:
        text += f", header {h.name}"
    return text


# ---------------------------------------------------------------------------- server side


def _inbound_chain(
    resources: Resources, address: str, mtls: bool
) -> tuple[listener_pb2.Listener, listener_components_pb2.FilterChain] | None:
    ip, _, port_text = address.rpartition(":")
    port = int(port_text)
    best: tuple[int, Any, Any] | None = None
    for lst in resources.get(LISTENER_TYPE, {}).values():
        assert isinstance(lst, listener_pb2.Listener)
        sa = lst.address.socket_address
        exact = sa.address == ip and sa.port_value == port
        virtual = lst.name == "virtualInbound"
        if not exact and not virtual:
            continue
        for fc in lst.filter_chains:
            m = fc.filter_chain_match
            if virtual and m.HasField("destination_port") and m.destination_port.value != port:
                continue
            if virtual and not m.HasField("destination_port"):
                continue
            tp = m.transport_protocol
            terminates_tls = tp == "tls" or (
                fc.HasField("transport_socket")
                and fc.transport_socket.typed_config.type_url.endswith("DownstreamTlsContext")
            )
            if terminates_tls != mtls:
                # a plaintext client meets a TLS-only chain (STRICT), or an mTLS client a
                # plaintext-only chain (DISABLE): no chain takes the connection
                continue
            score = (2 if exact else 1) * 10 + (1 if tp else 0)
            if best is None or score > best[0]:
                best = (score, lst, fc)
    return None if best is None else (best[1], best[2])


def _claims(
    request: ExplainRequest, jwt_cfg: jwt_pb2.JwtAuthentication | None
) -> tuple[dict[str, Any] | None, str | None]:
    """The payload of the request's bearer token (read, not verified) and an error."""
    auth = request.headers.get("authorization", "")
    token = auth[7:].strip() if auth.lower().startswith("bearer ") else None
    if jwt_cfg is not None:
        for p in jwt_cfg.providers.values():
            for fh in p.from_headers:
                v = request.headers.get(fh.name.lower())
                if v and fh.value_prefix and v.startswith(fh.value_prefix):
                    token = v[len(fh.value_prefix) :].strip()
    if not token:
        return None, None
    try:
        payload_b64 = token.split(".")[1]
        payload = json.loads(base64.urlsafe_b64decode(payload_b64 + "=" * (-len(payload_b64) % 4)))
    except (IndexError, ValueError):
        return None, "Jwt is not in the form of Header.Payload.Signature"
    if not isinstance(payload, dict):
        return None, "Jwt payload is not a JSON object"
    if jwt_cfg is not None:
        issuers = {p.issuer for p in jwt_cfg.providers.values()}
        if payload.get("iss") not in issuers:
            return None, "Jwt issuer is not configured"
    return payload, None


def _metadata_value(
    md: metadata_pb2.MetadataMatcher, payload: Mapping[str, Any] | None, peer: Peer
) -> bool:
    if md.filter == "envoy.filters.http.jwt_authn":
        value: Any = {"payload": payload} if payload is not None else {}
    elif md.filter == "pilotfish.peer":
        value = {"verified_namespace": peer.namespace} if peer.principal and peer.namespace else {}
    else:
        value = {}
    for seg in md.path:
        value = value.get(seg.key) if isinstance(value, Mapping) else None
    result = _value_matches(md.value, value)
    return result != md.invert


def _value_matches(vm: Any, value: Any) -> bool:
    """Envoy's ValueMatcher on a JSON value (a string matcher needs a string, a list matcher
    a list with a matching item)."""
    kind = vm.WhichOneof("match_pattern")
    if kind == "present_match":
        return value is not None
    if kind == "null_match":
        return value is None
    if kind == "string_match":
        return isinstance(value, str) and string_matches(vm.string_match, value)
    if kind == "bool_match":
        return value is vm.bool_match
    if kind == "double_match":
        return isinstance(value, int | float) and (
            value == vm.double_match.exact
            if vm.double_match.WhichOneof("match_pattern") == "exact"
            else vm.double_match.range.start <= value < vm.double_match.range.end
        )
    if kind == "list_match":
        return isinstance(value, list) and any(
            _value_matches(vm.list_match.one_of, v) for v in value
        )
    if kind == "or_match":
        return any(_value_matches(m, value) for m in vm.or_match.value_matchers)
    return False


@dataclass
class _Ctx:
    request: ExplainRequest
    peer: Peer
    payload: dict[str, Any] | None
    port: int
    unknown: list[str] = field(default_factory=list)


def _cidr(r: Any, ip: str) -> bool:
    net = ipaddress.ip_network(f"{r.address_prefix}/{r.prefix_len.value}", strict=False)
    return ipaddress.ip_address(ip) in net


def permission_matches(p: rbac_pb2.Permission, c: _Ctx) -> bool:
    kind = p.WhichOneof("rule")
    if kind == "any":
        return p.any
    if kind == "and_rules":
        return all(permission_matches(r, c) for r in p.and_rules.rules)
    if kind == "or_rules":
        return any(permission_matches(r, c) for r in p.or_rules.rules)
    if kind == "not_rule":
        return not permission_matches(p.not_rule, c)
    if kind == "header":
        return header_matches(p.header, c.request)
    if kind == "url_path":
        return string_matches(p.url_path.path, c.request.path_only)
    if kind == "destination_port":
        return p.destination_port == c.port
    if kind == "destination_port_range":
        return p.destination_port_range.start <= c.port < p.destination_port_range.end
    if kind == "metadata":
        return _metadata_value(p.metadata, c.payload, c.peer)
    if kind == "uri_template":
        from envoy.extensions.path.match.uri_template.v3 import uri_template_match_pb2

        t = uri_template_match_pb2.UriTemplateMatchConfig()
        p.uri_template.typed_config.Unpack(t)
        return _uri_template_matches(t.path_template, c.request.path_only)
    c.unknown.append(f"permission {kind}")
    return False


def principal_matches(p: rbac_pb2.Principal, c: _Ctx) -> bool:
    kind = p.WhichOneof("identifier")
    if kind == "any":
        return p.any
    if kind == "and_ids":
        return all(principal_matches(i, c) for i in p.and_ids.ids)
    if kind == "or_ids":
        return any(principal_matches(i, c) for i in p.or_ids.ids)
    if kind == "not_id":
        return not principal_matches(p.not_id, c)
    if kind == "authenticated":
        if c.peer.principal is None:
            return False
        if not p.authenticated.HasField("principal_name"):
            return True
        return string_matches(p.authenticated.principal_name, c.peer.principal)
    if kind in ("source_ip", "direct_remote_ip", "remote_ip"):
        return _cidr(getattr(p, kind), c.peer.ip)
    if kind == "header":
        return header_matches(p.header, c.request)
    if kind == "url_path":
        return string_matches(p.url_path.path, c.request.path_only)
    if kind == "metadata":
        return _metadata_value(p.metadata, c.payload, c.peer)
    c.unknown.append(f"principal {kind}")
    return False


_POLICY_NAME = re.compile(
    r"^(?:istio-ext-authz-)?ns\[(?P<ns>[^\]]*)\]-policy\[(?P<name>[^\]]*)\]-rule\[(?P<rule>\d+)\]$"
)
#: The policy Pilotfish denies with when a CUSTOM policy's provider cannot be used.
CUSTOM_DENY_ALL = "default-deny-all-due-to-unsupported-CUSTOM-action"


def _policy_ref(name: str) -> tuple[str, int | None]:
    m = _POLICY_NAME.match(name)
    if m is None:
        return name, None
    return f"{m['ns']}/{m['name']}", int(m["rule"])


def _first_match(rules: rbac_pb2.RBAC, c: _Ctx) -> str | None:
    for name in sorted(rules.policies, key=lambda n: (_policy_ref(n)[0], _policy_ref(n)[1] or 0)):
        policy = rules.policies[name]
        if any(permission_matches(p, c) for p in policy.permissions) and any(
            principal_matches(i, c) for i in policy.principals
        ):
            return name
    return None


def explain_server(
    resources: Resources,
    request: ExplainRequest,
    peer: Peer,
    address: str,
    app_port: int,
    mtls_mode: tuple[str, str | None] | None = None,
    providers: Mapping[str, str] | None = None,
) -> ServerPath:
    """The destination Envoy's walk for a request arriving at ``address`` (see the module
    docstring). ``app_port`` is the workload port the request is for; ``mtls_mode`` the
    effective PeerAuthentication mode for it and the policy that set it (None: unknown);
    ``providers``: the ext_authz provider of each CUSTOM policy (``ns/name``)."""
    providers = providers or {}
    out = ServerPath()
    mtls = peer.principal is not None
    if mtls_mode is not None:
        mode, by = mtls_mode
        out.steps.append(
            Step("peerAuthentication", mode, {"policy": by or "none (the default, PERMISSIVE)"})
        )
    found = _inbound_chain(resources, address, mtls)
    if found is None:
        out.allowed, out.status = False, 503
        why = "STRICT refuses plaintext, DISABLE refuses mTLS"
        if mtls_mode is not None:
            why = f"PeerAuthentication {mtls_mode[1] or '(default)'} is {mtls_mode[0]}"
        out.reason = (
            "no inbound filter chain accepts a "
            + ("mTLS" if mtls else "plaintext")
            + f" connection on {address} ({why})"
        )
        out.steps.append(Step("inboundListener", address, {"refused": True}))
        return out
    lst, fc = found
    tp = fc.filter_chain_match.transport_protocol or "any"
    out.steps.append(Step("inboundListener", lst.name, {}))
    out.steps.append(
        Step(
            "filterChain",
            fc.name or "(default)",
            {"transport": tp, "peer": peer.principal or "none (plaintext)"},
        )
    )
    h = None
    for f in fc.filters:
        if f.name == HCM:
            h = _unpack(f.typed_config, hcm_pb2.HttpConnectionManager())
    if not isinstance(h, hcm_pb2.HttpConnectionManager):
        # a TCP chain: the network filters before tcp_proxy decide (RBAC, ext_authz)
        c = _Ctx(request, peer, None, app_port)
        _authorize(
            out, [(f.name, f.typed_config) for f in fc.filters], c, resources, providers, True
        )
        if c.unknown:
            out.steps.append(Step("note", "unevaluated", {"matchers": sorted(set(c.unknown))}))
        return out
    jwt_cfg: jwt_pb2.JwtAuthentication | None = None
    for hf in h.http_filters:
        if hf.name == JWT_AUTHN:
            jwt_cfg = _unpack(hf.typed_config, jwt_pb2.JwtAuthentication())
    payload, jwt_error = _claims(request, jwt_cfg)
    if jwt_cfg is not None:
        detail: dict[str, Any] = {"issuers": sorted({p.issuer for p in jwt_cfg.providers.values()})}
        if jwt_error:
            detail["error"] = jwt_error
        elif payload is not None:
            detail["principal"] = f"{payload.get('iss')}/{payload.get('sub')}"
            detail["note"] = "the token is read, its signature is not checked"
        out.steps.append(Step("requestAuthentication", JWT_AUTHN, detail))
        if jwt_error:
            out.allowed, out.status, out.reason = False, 401, jwt_error
            return out
    c = _Ctx(request, peer, payload, app_port)
    _authorize(
        out, [(hf.name, hf.typed_config) for hf in h.http_filters], c, resources, providers, False
    )
    if c.unknown:
        out.steps.append(Step("note", "unevaluated", {"matchers": sorted(set(c.unknown))}))
    return out


def _endpoint_count(resources: Resources, cluster_name: str) -> int | None:
    """How many endpoints the proxy has for a cluster (None: it has no such cluster)."""
    cluster = resources.get(CLUSTER_TYPE, {}).get(cluster_name)
    if not isinstance(cluster, cluster_pb2.Cluster):
        return None
    cla = resources.get(ENDPOINT_TYPE, {}).get(
        cluster.eds_cluster_config.service_name or cluster_name
    )
    if cla is None and cluster.HasField("load_assignment"):
        cla = cluster.load_assignment
    if not isinstance(cla, endpoint_pb2.ClusterLoadAssignment):
        return 0
    return sum(len(le.lb_endpoints) for le in cla.endpoints)


def _ext_authz(
    out: ServerPath,
    typed_config: Any,
    custom_hit: str | None,
    resources: Resources,
    providers: Mapping[str, str],
    tcp: bool,
) -> bool:
    """The ext_authz filter for a request a CUSTOM rule sent to it: the provider, and the
    verdict when config alone decides it (the provider has no endpoints). True: stop here."""
    if tcp:
        cfg: Any = _unpack(typed_config, net_ext_authz_pb2.ExtAuthz())
        cluster = cfg.grpc_service.envoy_grpc.cluster_name
        fail_open, status = cfg.failure_mode_allow, None
    else:
        cfg = _unpack(typed_config, ext_authz_pb2.ExtAuthz())
        if cfg.HasField("grpc_service"):
            cluster = cfg.grpc_service.envoy_grpc.cluster_name
        else:
            cluster = cfg.http_service.server_uri.cluster
        fail_open = cfg.failure_mode_allow
        status = cfg.status_on_error.code if cfg.HasField("status_on_error") else 403
    ref, rule = _policy_ref(custom_hit) if custom_hit else (None, None)
    provider = providers.get(ref or "", "") or "(the policy's provider)"
    detail: dict[str, Any] = {
        "provider": provider,
        "cluster": cluster,
        "api": "gRPC" if cfg.HasField("grpc_service") else "HTTP",
    }
    if ref is not None:
        detail["policy"] = ref + (f" (rule {rule})" if rule is not None else "")
    count = _endpoint_count(resources, cluster)
    if not count:
        down = "is not a cluster of this proxy" if count is None else "has no endpoints"
        detail["provider_state"] = f"down: {cluster} {down}"
        if fail_open:
            detail["verdict"] = "allow (failOpen: the check fails and the request goes on)"
            out.steps.append(Step("extAuthz", provider, detail))
            return False
        out.allowed, out.status = False, (None if tcp else status)
        out.reason = f"ext_authz provider {provider} is down ({cluster} {down}): " + (
            "the connection is closed" if tcp else f"Envoy answers {status} (statusOnError)"
        )
        out.policy, out.rule = ref, rule
        detail["verdict"] = "deny"
        out.steps.append(Step("extAuthz", provider, detail))
        return True
    detail["verdict"] = (
        f"sent to the external authorizer {provider}: its answer decides (not known offline)"
    )
    out.steps.append(Step("extAuthz", provider, detail))
    if out.allowed is not False:
        out.allowed = None
        out.reason = f"sent to the ext_authz provider {provider}, whose answer is not known offline"
        out.policy, out.rule = ref, rule
    return False


def _authorize(
    out: ServerPath,
    filters: Sequence[tuple[str, Any]],
    c: _Ctx,
    resources: Resources,
    providers: Mapping[str, str],
    tcp: bool,
) -> None:
    """The authorization filters of a chain, in Envoy's order: CUSTOM (a shadow RBAC marks
    what goes to ext_authz), DENY, ALLOW. HTTP filters answer 403; network filters close the
    connection."""
    custom_hit: str | None = None
    custom_seen = False
    denied_reason = "RBAC: connection closed" if tcp else "RBAC: access denied"
    for name, typed_config in filters:
        if name in (EXT_AUTHZ, EXT_AUTHZ_NETWORK):
            sent = not custom_seen or custom_hit is not None
            if sent and _ext_authz(out, typed_config, custom_hit, resources, providers, tcp):
                return
            continue
        if name not in (RBAC_HTTP, RBAC_NETWORK):
            continue
        cfg: Any = (
            _unpack(typed_config, net_rbac_pb2.RBAC())
            if name == RBAC_NETWORK
            else _unpack(typed_config, http_rbac_pb2.RBAC())
        )
        if not cfg.HasField("rules"):
            if (
                cfg.HasField("shadow_rules")
                and cfg.shadow_rules_stat_prefix == EXT_AUTHZ_SHADOW_PREFIX
            ):
                custom_seen = True
                custom_hit = _first_match(cfg.shadow_rules, c)
                step: dict[str, Any] = {"policies": sorted(cfg.shadow_rules.policies)}
                if custom_hit is None:
                    step["verdict"] = "no CUSTOM rule matches: not sent to the external authorizer"
                else:
                    step["matched"] = custom_hit
                out.steps.append(Step("authorization", "CUSTOM", step))
            continue
        rules = cfg.rules
        action = rbac_pb2.RBAC.Action.Name(rules.action)
        hit = _first_match(rules, c)
        step = {"action": action, "policies": sorted(rules.policies)}
        if hit is not None:
            step["matched"] = hit
        if action == "DENY" and hit is not None:
            out.allowed, out.status, out.reason = False, (None if tcp else 403), denied_reason
            out.policy, out.rule = _policy_ref(hit)
            if hit == CUSTOM_DENY_ALL:
                out.reason += (
                    " (a CUSTOM policy's provider cannot be used: every request is denied; "
                    "see the control plane's warning for the policy)"
                )
            step["verdict"] = "deny"
            out.steps.append(Step("authorization", "DENY", step))
            return
        if action == "ALLOW":
            if hit is None:
                out.allowed, out.status, out.reason = False, (None if tcp else 403), denied_reason
                step["verdict"] = "deny (no ALLOW policy matches)"
                out.policy = ",".join(sorted({_policy_ref(n)[0] for n in rules.policies})) or None
                out.rule = None
                out.steps.append(Step("authorization", "ALLOW", step))
                return
            if out.allowed is not None:
                out.policy, out.rule = _policy_ref(hit)
            step["verdict"] = "allow"
        out.steps.append(Step("authorization", action, step))


def endpoint_port(address: str) -> int:
    return int(address.rpartition(":")[2])


def cluster_port(cluster: str) -> int | None:
    parts = cluster.split("|")
    try:
        return int(parts[1]) if len(parts) >= 2 else None
    except ValueError:
        return None


def weights_text(clusters: Sequence[tuple[str, int]]) -> str:
    return ", ".join(f"{c} ({w}%)" for c, w in clusters)


# ---------------------------------------------------------------------------- the whole walk


def _server_node(nodes: Sequence[NodeInfo], address: str) -> tuple[NodeInfo, int, str] | None:
    """The proxy that serves ``address``, the app port the request is for and the address its
    inbound listener takes it on (explicit mode: ``IP:inbound_ports[app port]``)."""
    ip, _, port_text = address.rpartition(":")
    port = int(port_text)
    for node in nodes:
        if node.ip != ip or node.proxy_type != "sidecar":
            continue
        for app_port, bound in node.inbound_ports.items():
            if bound == port:
                return node, app_port, address
        if port in node.inbound_ports:
            return node, port, f"{ip}:{node.inbound_ports[port]}"
        if not node.inbound_ports:
            return node, port, address  # captured: the virtual inbound listener takes it
    return None


def _generated(node: NodeInfo, push: PushContext) -> Resources:
    """What ``node`` is sent, its route configs as Envoy holds them (the virtual hosts of
    VHDS merged in): the walk reads a request's virtual host from its route config."""
    resources = generate(node, push)
    vhosts = resources.get(VIRTUAL_HOST_TYPE)
    if not vhosts:
        return resources
    return {**resources, ROUTE_TYPE: merge_vhds(resources.get(ROUTE_TYPE, {}), vhosts)}


def explain_request(
    push: PushContext, nodes: Sequence[NodeInfo], source: NodeInfo, request: ExplainRequest
) -> dict[str, Any]:
    """The whole walk as JSON: the client side, each endpoint's server side, and the verdict
    (the subsets the request may reach, allowed or denied, the status and what decided)."""
    listen_port = source.gateway_ports.get(request.port) if source.gateway_ports else None
    service = push.service(
        resolve_host(request.host, source.namespace, push.settings.domain_suffix)
    )
    vip = service.vip if service is not None else None
    client = explain_client(
        _generated(source, push), request, listen_port, vip, gateway=source.proxy_type == "router"
    )
    providers = {
        f"{p.namespace}/{p.name}": p.spec.provider.name
        for p in push.authorization_policies
        if p.spec.action == "CUSTOM" and p.spec.provider is not None
    }
    verdict: dict[str, Any] = {
        "allowed": None,
        "status": None,
        "reason": "",
        "policy": None,
        "rule": None,
    }
    destinations = [
        {
            "cluster": c,
            "subset": subset_of(c),
            "weight": w,
            "endpoints": client.endpoints.get(c, []),
        }
        for c, w in client.clusters
    ]
    servers: list[dict[str, Any]] = []
    generated: dict[str, Resources] = {}
    if client.local_status is not None:
        verdict.update(
            allowed=not (client.local_status >= 400 or client.local_status == 0),
            status=client.local_status or None,
            reason=client.local_reason,
        )
    else:
        outcomes: list[ServerPath] = []
        for c, _ in client.clusters:
            for address in client.endpoints.get(c, []):
                mtls = client.mtls.get(address, False)
                peer = Peer(source.spiffe_id if mtls else None, source.namespace, source.ip)
                found = _server_node(nodes, address)
                item: dict[str, Any] = {"cluster": c, "endpoint": address}
                if found is None:
                    item["proxy"] = None
                    item["note"] = (
                        "no connected proxy serves this endpoint; nothing checks the request"
                    )
                    servers.append(item)
                    outcomes.append(ServerPath())
                    continue
                node, app_port, listen = found
                if node.node_id not in generated:
                    generated[node.node_id] = _generated(node, push)
                effective = workload_policy(push, node.namespace, node.labels)
                mode = (effective.for_port(app_port), effective.decided_for_port(app_port))
                sp = explain_server(
                    generated[node.node_id], request, peer, listen, app_port, mode, providers
                )
                item.update(
                    proxy=f"{node.namespace}/{node.pod_name}",
                    steps=[s.to_dict() for s in sp.steps],
                    allowed=sp.allowed,
                    status=sp.status,
                    reason=sp.reason,
                    policy=sp.policy,
                    rule=sp.rule,
                )
                servers.append(item)
                outcomes.append(sp)
        if not any(client.endpoints.get(c) for c, _ in client.clusters):
            verdict.update(
                allowed=False,
                status=503,
                reason="no healthy upstream (UH): the cluster has no endpoints",
            )
        elif outcomes:
            first = outcomes[0]
            same = all(
                (o.allowed, o.status, o.policy, o.rule)
                == (first.allowed, first.status, first.policy, first.rule)
                for o in outcomes
            )
            if same:
                verdict.update(
                    allowed=first.allowed,
                    status=first.status,
                    reason=first.reason,
                    policy=first.policy,
                    rule=first.rule,
                )
            else:
                verdict.update(reason="the endpoints decide differently (see servers)")
    verdict["subsets"] = sorted({d["subset"] for d in destinations})
    if client.faults:
        verdict["faults"] = list(client.faults)
    return {
        "request": {
            "method": request.method.upper(),
            "url": request.url,
            "headers": dict(request.headers),
        },
        "from": f"{source.namespace}/{source.pod_name}",
        "client": [s.to_dict() for s in client.steps],
        "destinations": destinations,
        "servers": servers,
        "verdict": verdict,
    }
