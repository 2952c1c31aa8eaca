"""EnvoyFilter: Istio's ``configPatches`` applied to one proxy's generated config.

Which filters apply (Istio's ``PushContext.EnvoyFilters``; the rule's one home is
``api.bootstrap_patch``, which the runtime uses for BOOTSTRAP): those of the root namespace
(the mesh config's ``rootNamespace``; mesh-wide) and those of the proxy's namespace, each if
its ``workloadSelector`` labels are a subset of the proxy's labels; ordered by ``priority``,
then root namespace first, then creation time, then ``name.namespace``. Patches apply in
that order, in the order written.

Where (Istio's ``envoyfilter`` package): ``match.context`` is GATEWAY for routers, and for
sidecars SIDECAR_INBOUND on inbound listeners, inbound clusters (``inbound|PORT||``) and the
inbound HCMs' inline route configs, SIDECAR_OUTBOUND on everything else; ANY matches all.
``match.proxy``: ``metadata`` entries equal the node's, ``proxyVersion`` a regex on the node's
``ISTIO_VERSION``. Listener matches follow Istio: on ``virtualInbound``/``virtualOutbound`` a
``portNumber`` selects filter chains by ``destination_port`` and the listener name check is
done on the chain names too (Pilotfish's outbound chains carry the names of Istio's outbound
listeners, ``0.0.0.0_9080``): a LISTENER REMOVE naming such a port removes its chains, a
LISTENER MERGE for it has nothing to merge into (``apply`` warns); explicit-mode listeners
(``IP_BINDPORT``) also answer to the app port they serve, gateway listeners to the Gateway
server port they bind.

How: LISTENER (ADD, REMOVE, MERGE), FILTER_CHAIN (ADD, REMOVE, MERGE; the default chain is
a chain too), LISTENER_FILTER, NETWORK_FILTER and HTTP_FILTER (ADD appends, INSERT_FIRST,
INSERT_BEFORE/INSERT_AFTER the matched (sub)filter, or first/last when no (sub)filter is
named, REPLACE, REMOVE, MERGE), ROUTE_CONFIGURATION (MERGE), VIRTUAL_HOST (ADD, REMOVE,
MERGE), HTTP_ROUTE (ADD, INSERT_FIRST, INSERT_BEFORE, INSERT_AFTER, REMOVE, MERGE), CLUSTER
(ADD, REMOVE, MERGE); MERGE_AND_REPLACE_LIST wherever MERGE is; EXTENSION_CONFIG (ADD, as
in Istio: the ECDS resources, see ``extension_configs``). BOOTSTRAP patches are not the
control plane's: the runtime hands them to the agent, which writes Envoy's bootstrap
(``bootstrap_patches`` merges them for one workload).

Generated messages may be shared between proxies (the context's memo): every resource a
patch may touch is copied first.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, cast

import pydantic
from envoy.config.cluster.v3.cluster_pb2 import Cluster
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.config.listener.v3.listener_pb2 import Listener
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3.route_pb2 import RouteConfiguration
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf.message import Message

from pilotfish.api.bootstrap_patch import order_key, selects
from pilotfish.api.envoyvalue import PatchValueError, merge, parse_value
from pilotfish.api.networking import EnvoyConfigObjectMatch, EnvoyFilter
from pilotfish.api.typeurls import (
    CLUSTER_TYPE,
    EXTENSION_CONFIG_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
)
from pilotfish.model.proxy import Proxy
from pilotfish.model.push_context import PushContext
from pilotfish.translate.common import VIRTUAL_INBOUND, VIRTUAL_OUTBOUND, ClusterKey
from pilotfish.translate.gateway_tls import gateway_of_route_name

log = logging.getLogger(__name__)

HCM_FILTER = "envoy.filters.network.http_connection_manager"
HCM_TYPE = "type.googleapis.com/" + hcm_pb2.HttpConnectionManager.DESCRIPTOR.full_name
#: Envoy's older filter names, still accepted in matches as Istio accepts them.
_OLD_NAMES = {
    "envoy.http_connection_manager": HCM_FILTER,
    "envoy.router": "envoy.filters.http.router",
    "envoy.cors": "envoy.filters.http.cors",
    "envoy.fault": "envoy.filters.http.fault",
    "envoy.grpc_web": "envoy.filters.http.grpc_web",
    "envoy.tcp_proxy": "envoy.filters.network.tcp_proxy",
    "envoy.listener.tls_inspector": "envoy.filters.listener.tls_inspector",
    "envoy.listener.original_dst": "envoy.filters.listener.original_dst",
}

MERGES = ("MERGE", "MERGE_AND_REPLACE_LIST")


def _name_is(match: str, name: str) -> bool:
    return _OLD_NAMES.get(match, match) == name


@dataclass(frozen=True)
class Patch:
    """One compiled config patch of one EnvoyFilter."""

    source: str
    apply_to: str
    operation: str
    value: Message | None
    context: str
    match: EnvoyConfigObjectMatch
    version: re.Pattern[str] | None

    def merge_into(self, dst: Message) -> None:
        assert self.value is not None
        merge(dst, self.value, replace_lists=self.operation == "MERGE_AND_REPLACE_LIST")

    def clone(self) -> Any:
        assert self.value is not None
        out = type(self.value)()
        out.CopyFrom(self.value)
        return out


@dataclass(frozen=True)
class ScopedFilter:
    namespace: str
    name: str
    priority: int
    creation: str
    selector: dict[str, str] | None
    patches: tuple[Patch, ...]


def _compile(namespace: str, name: str, body: dict[str, Any]) -> ScopedFilter | None:
    try:
        ef = EnvoyFilter.model_validate(body)
    except pydantic.ValidationError as exc:
        log.warning("EnvoyFilter %s/%s ignored: %s", namespace, name, exc)
        return None
    spec = ef.spec
    if spec.targetRefs:
        # Refused at apply (Gateway API gateways and waypoints are not run here).
        return None
    patches = []
    for i, cp in enumerate(spec.configPatches):
        if cp.applyTo is None or cp.patch is None or cp.patch.operation is None:
            continue
        value = None
        if cp.patch.operation != "REMOVE":
            try:
                value = parse_value(cp.applyTo, cp.patch.value)
            except (PatchValueError, KeyError) as exc:
                log.warning(
                    "EnvoyFilter %s/%s configPatches[%d] left out: %s", namespace, name, i, exc
                )
                continue
        m = cp.match or EnvoyConfigObjectMatch()
        version = None
        if m.proxy is not None and m.proxy.proxyVersion:
            try:
                version = re.compile(m.proxy.proxyVersion)
            except re.error:
                continue
        patches.append(
            Patch(
                f"{namespace}/{name}",
                cp.applyTo,
                cp.patch.operation,
                value,
                m.context or "ANY",
                m,
                version,
            )
        )
    return ScopedFilter(
        namespace,
        name,
        spec.priority or 0,
        ef.metadata.creationTimestamp or "",
        dict(spec.workloadSelector.labels) if spec.workloadSelector is not None else None,
        tuple(patches),
    )


def _all_filters(push: PushContext) -> tuple[ScopedFilter, ...]:
    def compute() -> tuple[ScopedFilter, ...]:
        out = []
        for obj in push.objects("EnvoyFilter"):
            f = _compile(obj.namespace, obj.name, obj.body)
            if f is not None:
                out.append(f)
        return tuple(out)

    return push.memo(("envoyfilters",), compute)


def proxy_patches(push: PushContext, proxy: Proxy) -> list[Patch]:
    """The patches that apply to ``proxy``, in Istio's order."""
    root = push.settings.root_namespace
    chosen = [
        f
        for f in _all_filters(push)
        if selects(f.namespace, f.selector, root, proxy.namespace, proxy.labels)
    ]
    chosen.sort(key=lambda f: order_key(f.priority, f.namespace, root, f.creation, f.name))
    meta = proxy.node.metadata()
    version = str(meta.get("ISTIO_VERSION") or "")
    out = []
    for f in chosen:
        for p in f.patches:
            pm = p.match.proxy
            if pm is not None:
                if p.version is not None and (not version or not p.version.match(version)):
                    continue
                if any(str(meta.get(k, "")) != v for k, v in pm.metadata.items()):
                    continue
            out.append(p)
    return out


# ---- contexts -----------------------------------------------------------------------------


def _context_ok(p: Patch, ctx: str) -> bool:
    return p.context in ("ANY", ctx)


def _listener_context(proxy: Proxy, listener: Listener) -> str:
    if proxy.is_router:
        return "GATEWAY"
    return (
        "SIDECAR_INBOUND" if listener.traffic_direction == base_pb2.INBOUND else "SIDECAR_OUTBOUND"
    )


def _cluster_context(proxy: Proxy, cluster: Cluster) -> str:
    if proxy.is_router:
        return "GATEWAY"
    return "SIDECAR_INBOUND" if cluster.name.startswith("inbound|") else "SIDECAR_OUTBOUND"


# ---- listeners ----------------------------------------------------------------------------


def _virtual(listener: Listener) -> bool:
    return listener.name in (VIRTUAL_INBOUND, VIRTUAL_OUTBOUND)


def _listener_ports(proxy: Proxy, listener: Listener) -> set[int]:
    """The ports a listener answers to in a ``portNumber`` match (see the module doc)."""
    port = listener.address.socket_address.port_value
    ports = {port}
    node = proxy.node
    ports.update(t for t, b in node.inbound_ports.items() if b == port)
    ports.update(s for s, b in node.gateway_ports.items() if b == port)
    return ports


def _listener_match(proxy: Proxy, listener: Listener, p: Patch) -> bool:
    lm = p.match.listener
    if lm is None:
        return True
    # Istio's outbound listener names are chain names of virtualOutbound here.
    outbound_chain = listener.name == VIRTUAL_OUTBOUND and any(
        c.name == lm.name for c in listener.filter_chains
    )
    if lm.name and lm.name != listener.name and not outbound_chain:
        return False
    if _virtual(listener):
        return True
    return not lm.portNumber or lm.portNumber in _listener_ports(proxy, listener)


def _targets_chains(listener: Listener, p: Patch) -> bool:
    """On ``virtualInbound``/``virtualOutbound``, a LISTENER patch naming one of Istio's
    per-port listeners (a chain name, or a port other than the virtual listener's own) is
    about the filter chains of that port here, not the whole listener."""
    lm = p.match.listener
    if lm is None or not _virtual(listener):
        return False
    own = listener.address.socket_address.port_value
    return bool((lm.name and lm.name != listener.name) or (lm.portNumber and lm.portNumber != own))


def _whole_listener_match(proxy: Proxy, listener: Listener, p: Patch) -> bool:
    return _listener_match(proxy, listener, p) and not _targets_chains(listener, p)


def _chain_match(listener: Listener, chain: lc.FilterChain, p: Patch) -> bool:
    lm = p.match.listener
    if lm is None:
        return True
    fcm = chain.filter_chain_match
    if _virtual(listener):
        if lm.portNumber and fcm.destination_port.value != lm.portNumber:
            return False
        if lm.name and lm.name != listener.name and chain.name != lm.name:
            return False
    m = lm.filterChain
    if m is None:
        return True
    if m.name and m.name != chain.name:
        return False
    if m.sni and m.sni not in fcm.server_names:
        return False
    if m.transportProtocol and m.transportProtocol != fcm.transport_protocol:
        return False
    if m.applicationProtocols:
        wanted = {a.strip() for a in m.applicationProtocols.split(",")}
        if not wanted & set(fcm.application_protocols):
            return False
    return not m.destinationPort or fcm.destination_port.value == m.destinationPort


def _filter_match(f: lc.Filter, p: Patch) -> bool:
    lm = p.match.listener
    fm = lm.filterChain.filter if lm is not None and lm.filterChain is not None else None
    return fm is None or not fm.name or _name_is(fm.name, f.name)


def _has_filter_match(p: Patch) -> bool:
    lm = p.match.listener
    fm = lm.filterChain.filter if lm is not None and lm.filterChain is not None else None
    return fm is not None and bool(fm.name)


def _sub_filter_name(p: Patch) -> str:
    lm = p.match.listener
    fm = lm.filterChain.filter if lm is not None and lm.filterChain is not None else None
    sub = fm.subFilter if fm is not None else None
    return (sub.name or "") if sub is not None else ""


def _patch_list(
    items: Any,
    patches: Sequence[Patch],
    matches: Callable[[Any, Patch], bool],
    has_match: Callable[[Patch], bool],
) -> bool:
    """Istio's list operations (filters, listener filters) on a repeated field, in place."""
    changed = False
    for p in patches:
        op = p.operation
        if op == "ADD":
            items.append(p.clone())
        elif op == "INSERT_FIRST":
            items.insert(0, p.clone())
        elif op in ("INSERT_BEFORE", "INSERT_AFTER", "REPLACE"):
            if not has_match(p):
                if op == "INSERT_BEFORE":
                    items.insert(0, p.clone())
                elif op == "INSERT_AFTER":
                    items.append(p.clone())
                else:
                    continue
            else:
                at = next((i for i, x in enumerate(items) if matches(x, p)), -1)
                if at < 0:
                    continue
                if op == "REPLACE":
                    items[at].CopyFrom(p.clone())
                else:
                    items.insert(at if op == "INSERT_BEFORE" else at + 1, p.clone())
        elif op == "REMOVE":
            keep = [x for x in items if not matches(x, p)]
            if len(keep) == len(items):
                continue
            copies = []
            for x in keep:
                c = type(x)()
                c.CopyFrom(x)
                copies.append(c)
            del items[:]
            items.extend(copies)
        elif op in MERGES:
            for x in items:
                if matches(x, p):
                    p.merge_into(x)
        else:
            continue
        changed = True
    return changed


def _patch_http_filters(hcm: hcm_pb2.HttpConnectionManager, patches: Sequence[Patch]) -> None:
    def matches(f: hcm_pb2.HttpFilter, p: Patch) -> bool:
        name = _sub_filter_name(p)
        return not name or _name_is(name, f.name)

    _patch_list(hcm.http_filters, patches, matches, lambda p: bool(_sub_filter_name(p)))


def _patch_chain(
    proxy: Proxy, listener: Listener, chain: lc.FilterChain, by_type: dict[str, list[Patch]]
) -> None:
    nf = [p for p in by_type.get("NETWORK_FILTER", []) if _chain_match(listener, chain, p)]
    if nf:
        _patch_list(chain.filters, nf, _filter_match, _has_filter_match)
    hf = by_type.get("HTTP_FILTER", [])
    rcs = by_type.get("ROUTE_CONFIGURATION", []) + by_type.get("VIRTUAL_HOST", [])
    rcs += by_type.get("HTTP_ROUTE", [])
    ctx = _listener_context(proxy, listener)
    inbound_rc = [p for p in rcs if ctx == "SIDECAR_INBOUND"]
    hf = [p for p in hf if _chain_match(listener, chain, p)]
    if not hf and not inbound_rc:
        return
    for f in chain.filters:
        if f.name != HCM_FILTER or f.typed_config.type_url != HCM_TYPE:
            continue
        hcm = hcm_pb2.HttpConnectionManager()
        f.typed_config.Unpack(hcm)
        mine = [p for p in hf if _filter_match(f, p)]
        if mine:
            _patch_http_filters(hcm, mine)
        if inbound_rc and hcm.HasField("route_config"):
            _patch_route_config(proxy, hcm.route_config, inbound_rc, ctx, inline=True)
        f.typed_config.Pack(hcm, type_url_prefix="type.googleapis.com/")


def _patch_listener(proxy: Proxy, listener: Listener, by_type: dict[str, list[Patch]]) -> None:
    for p in by_type.get("LISTENER", []):
        if p.operation in MERGES and _whole_listener_match(proxy, listener, p):
            p.merge_into(listener)
    lf = [p for p in by_type.get("LISTENER_FILTER", []) if _listener_match(proxy, listener, p)]
    if lf:

        def lf_match(f: lc.ListenerFilter, p: Patch) -> bool:
            lm = p.match.listener
            name = lm.listenerFilter if lm is not None else None
            return not name or _name_is(name, f.name)

        def lf_has(p: Patch) -> bool:
            return bool(p.match.listener and p.match.listener.listenerFilter)

        _patch_list(listener.listener_filters, lf, lf_match, lf_has)
    for p in by_type.get("FILTER_CHAIN", []):
        if not _listener_match(proxy, listener, p):
            continue
        if p.operation == "ADD":
            listener.filter_chains.append(p.clone())
        elif p.operation == "REMOVE":
            keep = [c for c in listener.filter_chains if not _chain_match(listener, c, p)]
            if len(keep) != len(listener.filter_chains):
                copies = [_copy(c) for c in keep]
                del listener.filter_chains[:]
                listener.filter_chains.extend(copies)
            if listener.HasField("default_filter_chain") and _chain_match(
                listener, listener.default_filter_chain, p
            ):
                listener.ClearField("default_filter_chain")
        elif p.operation in MERGES:
            for c in _chains(listener):
                if _chain_match(listener, c, p):
                    p.merge_into(c)
    later = {k: [p for p in v if _listener_match(proxy, listener, p)] for k, v in by_type.items()}
    for c in _chains(listener):
        _patch_chain(proxy, listener, c, later)


def _chains(listener: Listener) -> list[lc.FilterChain]:
    out = list(listener.filter_chains)
    if listener.HasField("default_filter_chain"):
        out.append(listener.default_filter_chain)
    return out


M = Any


def _copy(msg: M) -> M:
    out = type(msg)()
    out.CopyFrom(msg)
    return out


def _patch_listeners(proxy: Proxy, listeners: dict[str, Message], patches: list[Patch]) -> None:
    relevant = (
        "LISTENER",
        "LISTENER_FILTER",
        "FILTER_CHAIN",
        "NETWORK_FILTER",
        "HTTP_FILTER",
        "ROUTE_CONFIGURATION",
        "VIRTUAL_HOST",
        "HTTP_ROUTE",
    )
    for name in list(listeners):
        listener = cast(Listener, listeners[name])
        ctx = _listener_context(proxy, listener)
        by_type: dict[str, list[Patch]] = {}
        for p in patches:
            if p.apply_to in relevant and _context_ok(p, ctx):
                by_type.setdefault(p.apply_to, []).append(p)
        if not by_type:
            continue
        copy = _copy(listener)
        _patch_listener(proxy, copy, by_type)
        listeners[name] = copy
    for p in patches:
        if p.apply_to != "LISTENER" or p.operation not in ("ADD", "REMOVE"):
            continue
        if p.operation == "ADD":
            if (p.context == "GATEWAY") != proxy.is_router and p.context != "ANY":
                continue
            new = p.clone()
            listeners[new.name] = new
        else:
            for name in list(listeners):
                lst = cast(Listener, listeners[name])
                if not _context_ok(p, _listener_context(proxy, lst)):
                    continue
                if _whole_listener_match(proxy, lst, p):
                    del listeners[name]
                elif _listener_match(proxy, lst, p) and _targets_chains(lst, p):
                    keep = [_copy(c) for c in lst.filter_chains if not _chain_match(lst, c, p)]
                    if len(keep) != len(lst.filter_chains):
                        lst = _copy(lst)
                        del lst.filter_chains[:]
                        lst.filter_chains.extend(keep)
                        listeners[name] = lst


# ---- routes -------------------------------------------------------------------------------


def _route_config_ports(proxy: Proxy, rc_name: str) -> set[int] | None:
    """Ports a route config answers to; None when it serves every port (explicit mode)."""
    if rc_name.startswith("inbound|"):
        key = ClusterKey.parse(rc_name)
        return {key.port} if key is not None else set()
    if rc_name.startswith("http."):
        tail = rc_name.split(".", 1)[1]
        if tail.isdigit():
            bind = int(tail)
            return {bind} | {s for s, b in proxy.node.gateway_ports.items() if b == bind}
        return set()
    if proxy.node.outbound_port is not None and rc_name == str(proxy.node.outbound_port):
        return None
    return {int(rc_name)} if rc_name.isdigit() else set()


def _rc_match(proxy: Proxy, route_config: RouteConfiguration, p: Patch) -> bool:
    m = p.match.routeConfiguration
    if m is None:
        return True
    if m.name and m.name != route_config.name:
        return False
    # As Istio: only a gateway's route configurations answer to a Gateway name (those of
    # its HTTPS servers, named after it); sidecars ignore the field.
    if m.gateway and proxy.is_router and gateway_of_route_name(route_config.name) != m.gateway:
        return False
    if m.portNumber:
        ports = _route_config_ports(proxy, route_config.name)
        if ports is not None and m.portNumber not in ports:
            return False
    return True


def _vhost_match(
    proxy: Proxy, route_config: RouteConfiguration, vh: rc.VirtualHost, p: Patch
) -> bool:
    m = p.match.routeConfiguration
    if m is None:
        return True
    if (
        m.portNumber
        and _route_config_ports(proxy, route_config.name) is None
        and not vh.name.endswith(f":{m.portNumber}")
    ):
        return False
    v = m.vhost
    if v is None:
        return True
    if v.name and v.name != vh.name:
        return False
    return not v.domainName or v.domainName in vh.domains


def _route_match(route: rc.Route, p: Patch) -> bool:
    m = p.match.routeConfiguration
    r = m.vhost.route if m is not None and m.vhost is not None else None
    if r is None:
        return True
    if r.name and r.name != route.name:
        return False
    action = r.action or "ANY"
    if action == "ROUTE":
        return route.HasField("route")
    if action == "REDIRECT":
        return route.HasField("redirect")
    if action == "DIRECT_RESPONSE":
        return route.HasField("direct_response")
    return True


def _has_route_match(p: Patch) -> bool:
    m = p.match.routeConfiguration
    return bool(m is not None and m.vhost is not None and m.vhost.route is not None)


def _patch_route_config(
    proxy: Proxy,
    route_config: RouteConfiguration,
    patches: Sequence[Patch],
    ctx: str,
    *,
    inline: bool = False,
) -> None:
    mine = [p for p in patches if _context_ok(p, ctx) and _rc_match(proxy, route_config, p)]
    for p in mine:
        if p.apply_to == "ROUTE_CONFIGURATION" and p.operation in MERGES:
            p.merge_into(route_config)
    for p in mine:
        if p.apply_to != "VIRTUAL_HOST":
            continue
        if p.operation == "ADD":
            route_config.virtual_hosts.append(p.clone())
        elif p.operation == "REMOVE":
            keep = [
                _copy(v)
                for v in route_config.virtual_hosts
                if not _vhost_match(proxy, route_config, v, p)
            ]
            del route_config.virtual_hosts[:]
            route_config.virtual_hosts.extend(keep)
        elif p.operation in MERGES:
            for v in route_config.virtual_hosts:
                if _vhost_match(proxy, route_config, v, p):
                    p.merge_into(v)
    routes = [p for p in mine if p.apply_to == "HTTP_ROUTE"]
    if not routes:
        return
    for vh in route_config.virtual_hosts:
        hp = [p for p in routes if _vhost_match(proxy, route_config, vh, p)]
        if hp:
            _patch_list(vh.routes, hp, _route_match, _has_route_match)


def _patch_routes(proxy: Proxy, routes: dict[str, Message], patches: list[Patch]) -> None:
    mine = [
        p for p in patches if p.apply_to in ("ROUTE_CONFIGURATION", "VIRTUAL_HOST", "HTTP_ROUTE")
    ]
    if not mine:
        return
    ctx = "GATEWAY" if proxy.is_router else "SIDECAR_OUTBOUND"
    for name in list(routes):
        copy = cast(RouteConfiguration, _copy(routes[name]))
        _patch_route_config(proxy, copy, mine, ctx)
        routes[name] = copy


# ---- clusters -----------------------------------------------------------------------------


def _cluster_match(proxy: Proxy, cluster: Cluster, p: Patch) -> bool:
    m = p.match.cluster
    if m is None:
        return True
    if m.name:
        return m.name == cluster.name
    key = ClusterKey.parse(cluster.name)
    if key is None:
        return not (m.subset or m.service or m.portNumber)
    if m.subset and m.subset != key.subset:
        return False
    if m.service:
        hosts = [key.host] if key.direction == "outbound" else [s.hostname for s in proxy.services]
        if m.service not in hosts:
            return False
    return not m.portNumber or m.portNumber == key.port


def _patch_clusters(proxy: Proxy, clusters: dict[str, Message], patches: list[Patch]) -> None:
    mine = [p for p in patches if p.apply_to == "CLUSTER"]
    for p in mine:
        if p.operation == "ADD":
            if (p.context == "GATEWAY") != proxy.is_router and p.context != "ANY":
                continue
            new = p.clone()
            clusters[new.name] = new
            continue
        for name in list(clusters):
            c = cast(Cluster, clusters[name])
            if not _context_ok(p, _cluster_context(proxy, c)) or not _cluster_match(proxy, c, p):
                continue
            if p.operation == "REMOVE":
                del clusters[name]
            elif p.operation in MERGES:
                copy = _copy(c)
                p.merge_into(copy)
                clusters[name] = copy


# ---- extension configs (ECDS) ---------------------------------------------------------------


def extension_configs(patches: Sequence[Patch]) -> dict[str, Message]:
    """The ECDS resources of a proxy: what its EXTENSION_CONFIG ADD patches add, by name
    (Istio's ``InsertedExtensionConfigurations``: ``match`` and context play no part; of two
    patches adding one name, the later in Istio's order wins). Envoy asks for them by the
    names its HTTP filters' ``config_discovery`` give."""
    out: dict[str, Message] = {}
    for p in patches:
        if p.apply_to == "EXTENSION_CONFIG" and p.operation == "ADD":
            value = p.clone()
            out[value.name] = value
    return out


def apply_patches(
    proxy: Proxy,
    push: PushContext,
    resources: dict[str, dict[str, Message]],
    types: Collection[str] = (CLUSTER_TYPE, LISTENER_TYPE, ROUTE_TYPE, EXTENSION_CONFIG_TYPE),
) -> None:
    """Apply the EnvoyFilters of ``proxy`` to its generated ``resources`` of ``types`` (in
    place: the maps are the proxy's own, the messages are replaced by patched copies; a type
    not generated is left empty)."""
    patches = proxy_patches(push, proxy)
    if not patches:
        return
    if CLUSTER_TYPE in types:
        _patch_clusters(proxy, resources[CLUSTER_TYPE], patches)
    if LISTENER_TYPE in types:
        _patch_listeners(proxy, resources[LISTENER_TYPE], patches)
    if ROUTE_TYPE in types:
        _patch_routes(proxy, resources[ROUTE_TYPE], patches)
    if EXTENSION_CONFIG_TYPE in types:
        resources.setdefault(EXTENSION_CONFIG_TYPE, {}).update(extension_configs(patches))
