"""VirtualService analyzers: references to gateways, hosts, ports and subsets; mesh host
conflicts; hosts a bound Gateway does not serve.

- IST0101 ``gateway``: a ``gateways`` entry (spec or match) names no Gateway.
- IST0101 ``host`` / ``mirror host``: a destination host is no Service or ServiceEntry host
  visible from the VirtualService's namespace.
- IST0101 ``host:port``: the destination port is not a port of that service.
- IST0101 ``host+subset in destinationrule``: no DestinationRule for the host defines the
  subset (``"reviews+v4"``).
- IST0112: no destination port, and the service has several.
- IST0109: two VirtualServices bound to the mesh gateway define the same host for the same
  namespaces.
- IST0132: a bound Gateway (missing or not) serves none of the VirtualService's hosts; the
  message lists all its hosts, as istioctl does.
- IST0149: routing on ``@request.auth.claims.*`` headers at a gateway whose pods have no
  RequestAuthentication, so the claims are never there.
- IST0140: a gateway-bound VirtualService routes to a host without a subset while another
  VirtualService of that host splits it by subsets: the split does not apply to gateway
  requests.
- IST0122: a match (``uri``, ``scheme``, ``method``, ``authority``, ``headers``,
  ``queryParams``) or ``corsPolicy.allowOrigins`` regex that RE2 does not compile. Validation
  refuses such a VirtualService at apply (IST0106 for a file), so this is seen on files.
- IST0002: ``fault.delay.percent`` (deprecated for ``percentage``), as Istio's deprecation
  analyzer reports it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

from pilotfish.api.networking import Gateway
from pilotfish.api.security import RequestAuthentication
from pilotfish.api.virtualservice import (
    Destination,
    L4MatchAttributes,
    RouteDestination,
    StringMatch,
    TLSMatchAttributes,
    VirtualService,
)
from pilotfish.config.analyze import messages as m
from pilotfish.config.analyze.context import AnalysisContext, Entry
from pilotfish.config.analyze.messages import Message
from pilotfish.config.analyze.names import (
    MESH_GATEWAY,
    host_matches,
    hosts_intersect,
    labels_match,
    normalize_gateway,
    split_server_host,
)
from pilotfish.config.validation.common import regex_problem

__all__ = [
    "analyze_conflicting_mesh_hosts",
    "analyze_deprecated_fields",
    "analyze_destinations",
    "analyze_gateway_hosts",
    "analyze_gateway_references",
    "analyze_ingress_subsets",
    "analyze_jwt_claim_routes",
    "analyze_regexes",
]

KIND = "VirtualService"


@dataclass(frozen=True, slots=True)
class _Dest:
    destination: Destination
    path: str  # of the Destination object
    mirror: bool


def _destinations(vs: VirtualService) -> Iterator[_Dest]:
    spec = vs.spec
    for i, http in enumerate(spec.http):
        for j, r in enumerate(http.route):
            yield _Dest(r.destination, f"spec.http[{i}].route[{j}].destination", False)
        if http.mirror is not None:
            yield _Dest(http.mirror, f"spec.http[{i}].mirror", True)
        for j, mp in enumerate(http.mirrors):
            yield _Dest(mp.destination, f"spec.http[{i}].mirrors[{j}].destination", True)
    l4: list[tuple[str, int, list[RouteDestination]]] = [
        *(("tls", i, r.route) for i, r in enumerate(spec.tls)),
        *(("tcp", i, r.route) for i, r in enumerate(spec.tcp)),
    ]
    for section, i, route_destinations in l4:
        for j, rd in enumerate(route_destinations):
            yield _Dest(rd.destination, f"spec.{section}[{i}].route[{j}].destination", False)


def _has_subset(ctx: AnalysisContext, fqdn: str, subset: str) -> bool:
    if (fqdn, subset) in ctx.subsets:
        return True
    return any(s == subset and host_matches(h, fqdn) for h, s in ctx.subsets if "*" in h)


def _check_destination(ctx: AnalysisContext, e: Entry, d: _Dest) -> Iterator[Message]:
    dest = d.destination
    ref = m.REFERENCED_RESOURCE_NOT_FOUND
    if dest.subset:
        fqdn = ctx.fqdn(dest.host, e.namespace)
        if not _has_subset(ctx, fqdn, dest.subset):
            yield e.message(
                ref,
                "host+subset in destinationrule",
                f"{dest.host}+{dest.subset}",
                path=f"{d.path}.subset",
            )
    service = ctx.find_service(dest.host, e.namespace)
    if service is None:
        what = "mirror host" if d.mirror else "host"
        yield e.message(ref, what, dest.host, path=f"{d.path}.host")
        return
    if not service.ports:
        return
    number = dest.port.number if dest.port is not None else None
    if number is None:
        if len(service.ports) > 1:
            ports = "[" + " ".join(str(p) for p in service.ports) + "]"
            yield e.message(
                m.VIRTUAL_SERVICE_DESTINATION_PORT_SELECTOR_REQUIRED,
                dest.host,
                ports,
                path=f"{d.path}.host",
            )
    elif number not in service.ports:
        yield e.message(ref, "host:port", f"{dest.host}:{number}", path=f"{d.path}.port.number")


def analyze_destinations(ctx: AnalysisContext) -> Iterator[Message]:
    """IST0101 (host, mirror host, host:port, host+subset) and IST0112."""
    for e, vs in ctx.of_kind(KIND, VirtualService):
        for d in _destinations(vs):
            yield from _check_destination(ctx, e, d)


def _gateway_refs(vs: VirtualService) -> Iterator[tuple[str, str]]:
    spec = vs.spec
    for i, g in enumerate(spec.gateways):
        yield g, f"spec.gateways[{i}]"
    for i, http in enumerate(spec.http):
        for j, match in enumerate(http.match):
            for k, g in enumerate(match.gateways):
                yield g, f"spec.http[{i}].match[{j}].gateways[{k}]"
    l4: list[tuple[str, int, int, TLSMatchAttributes | L4MatchAttributes]] = [
        *(("tls", i, j, mt) for i, r in enumerate(spec.tls) for j, mt in enumerate(r.match)),
        *(("tcp", i, j, mt) for i, r in enumerate(spec.tcp) for j, mt in enumerate(r.match)),
    ]
    for section, i, j, l4match in l4:
        for k, g in enumerate(l4match.gateways):
            yield g, f"spec.{section}[{i}].match[{j}].gateways[{k}]"


def analyze_gateway_references(ctx: AnalysisContext) -> Iterator[Message]:
    """IST0101 ``gateway``: every referenced Gateway exists."""
    for e, vs in ctx.of_kind(KIND, VirtualService):
        for ref, path in _gateway_refs(vs):
            if ref == MESH_GATEWAY:
                continue
            if normalize_gateway(ref, e.namespace) not in ctx.gateways:
                yield e.message(m.REFERENCED_RESOURCE_NOT_FOUND, "gateway", ref, path=path)


def analyze_gateway_hosts(ctx: AnalysisContext) -> Iterator[Message]:
    """IST0132: none of the VirtualService's hosts is served by a bound Gateway (a Gateway
    that does not exist serves none, so it is reported here too, besides IST0101)."""
    for e, vs in ctx.of_kind(KIND, VirtualService):
        for i, ref in enumerate(vs.spec.gateways):
            if ref == MESH_GATEWAY:
                continue
            gw_key = normalize_gateway(ref, e.namespace)
            gw_entry = ctx.gateways.get(gw_key)
            server_hosts: list[tuple[str, str]] = []
            if gw_entry is not None and isinstance(gw_entry.obj, Gateway):
                server_hosts = [
                    split_server_host(h, gw_entry.namespace)
                    for server in gw_entry.obj.spec.servers
                    for h in server.hosts
                ]
            served = any(
                ns in ("*", e.namespace)
                and (hosts_intersect(h, host) or hosts_intersect(h, ctx.fqdn(host, e.namespace)))
                for host in vs.spec.hosts
                for ns, h in server_hosts
            )
            if not served:
                yield e.message(
                    m.VIRTUAL_SERVICE_HOST_NOT_FOUND_IN_GATEWAY,
                    "[" + " ".join(vs.spec.hosts) + "]",
                    f"{e.namespace}/{e.name}",
                    gw_key,
                    path=f"spec.gateways[{i}]",
                )


#: Header names that route on a validated JWT's claims (Istio's ``@request.auth.claims``).
JWT_CLAIM_PREFIX = "@request.auth.claims"


def _claim_key(vs: VirtualService) -> str | None:
    for http in vs.spec.http:
        for match in http.match:
            for key in [*match.headers, *match.withoutHeaders]:
                if key.startswith(JWT_CLAIM_PREFIX):
                    return key
    return None


def analyze_jwt_claim_routes(ctx: AnalysisContext) -> Iterator[Message]:
    """IST0149: routing on JWT claims at a gateway whose pods no RequestAuthentication
    applies to (a root-namespace one, or one of the pod's namespace, selecting it)."""
    root = ctx.settings.root_namespace
    selectors: dict[str, list[dict[str, str]]] = {}
    for e, ra in ctx.of_kind("RequestAuthentication", RequestAuthentication):
        labels = dict(ra.spec.selector.matchLabels) if ra.spec.selector is not None else {}
        selectors.setdefault(e.namespace, []).append(labels)
    for e, vs in ctx.of_kind(KIND, VirtualService):
        key = _claim_key(vs)
        if key is None:
            continue
        for i, ref in enumerate(vs.spec.gateways):
            if ref == MESH_GATEWAY:
                continue
            gw_key = normalize_gateway(ref, e.namespace)
            gw_entry = ctx.gateways.get(gw_key)
            if gw_entry is None or not isinstance(gw_entry.obj, Gateway):
                continue  # IST0101
            for w in ctx.workloads_selected(gw_entry.obj.spec.selector, None):
                candidates = [*selectors.get(root, []), *selectors.get(w.namespace, [])]
                if any(labels_match(sel, w.labels) for sel in candidates):
                    continue
                yield e.message(
                    m.JWT_CLAIM_BASED_ROUTING_WITHOUT_REQUEST_AUTHN,
                    key,
                    gw_key,
                    w.name,
                    path=f"spec.gateways[{i}]",
                )


def analyze_ingress_subsets(ctx: AnalysisContext) -> Iterator[Message]:
    """IST0140: a gateway-bound VirtualService routes to a host without a subset while another
    VirtualService of that host routes it by subsets; gateway requests skip that split."""
    with_subsets: dict[str, list[Entry]] = {}
    for e, vs in ctx.of_kind(KIND, VirtualService):
        own = {ctx.fqdn(h, e.namespace) for h in vs.spec.hosts}
        for http in vs.spec.http:
            for r in http.route:
                fqdn = ctx.fqdn(r.destination.host, e.namespace)
                if r.destination.subset and fqdn in own and e not in with_subsets.get(fqdn, []):
                    with_subsets.setdefault(fqdn, []).append(e)
    for e, vs in ctx.of_kind(KIND, VirtualService):
        if not vs.spec.gateways:
            continue
        for i, http in enumerate(vs.spec.http):
            for j, r in enumerate(http.route):
                if r.destination.subset:
                    continue
                fqdn = ctx.fqdn(r.destination.host, e.namespace)
                for other in with_subsets.get(fqdn, []):
                    if other.key == e.key:
                        continue
                    yield e.message(
                        m.INGRESS_ROUTE_RULES_NOT_AFFECTED,
                        f"{other.namespace}/{other.name}",
                        f"{e.namespace}/{e.name}",
                        path=f"spec.http[{i}].route[{j}].destination.host",
                    )


def _bound_to_mesh(vs: VirtualService) -> bool:
    return not vs.spec.gateways or MESH_GATEWAY in vs.spec.gateways


def analyze_conflicting_mesh_hosts(ctx: AnalysisContext) -> Iterator[Message]:
    """IST0109: one host defined by several mesh-bound VirtualServices for the same scope."""
    by_host: dict[tuple[str, str], list[Entry]] = {}
    for e, vs in ctx.of_kind(KIND, VirtualService):
        if not _bound_to_mesh(vs):
            continue
        export = vs.spec.exportTo
        scopes = (
            ["*"]
            if not export or "*" in export
            else sorted({e.namespace if x == "." else x for x in export})
        )
        for scope in scopes:
            for host in dict.fromkeys(vs.spec.hosts):
                by_host.setdefault((scope, ctx.fqdn(host, e.namespace)), []).append(e)
    for (_scope, fqdn), entries in sorted(by_host.items()):
        if len(entries) < 2:
            continue
        names = ",".join(f"{x.namespace}/{x.name}" for x in entries)
        for x in entries:
            yield x.message(
                m.CONFLICTING_MESH_GATEWAY_VIRTUAL_SERVICE_HOSTS, names, fqdn, path="metadata.name"
            )


def _quoted(text: str) -> str:
    """``text`` quoted as Go's ``%q`` quotes it (the catalogue's templates use ``%q``)."""
    return json.dumps(text, ensure_ascii=False)


def _string_matches(vs: VirtualService) -> Iterator[tuple[str, str, StringMatch]]:
    """Every StringMatch Istio's regex analyzer reads: ``(where, path, match)``."""
    for i, route in enumerate(vs.spec.http):
        for j, mr in enumerate(route.match):
            base = f"spec.http[{i}].match[{j}]"
            for where in ("uri", "scheme", "method", "authority"):
                sm = getattr(mr, where)
                if sm is not None:
                    yield where, f"{base}.{where}.regex", sm
            for where, items in (("headers", mr.headers), ("queryParams", mr.queryParams)):
                for key, sm in items.items():
                    yield where, f"{base}.{where}[{key}].regex", sm
        cors = route.corsPolicy
        if cors is not None:
            for k, sm in enumerate(cors.allowOrigins):
                yield "corsPolicy.allowOrigins", f"spec.http[{i}].corsPolicy.allowOrigins[{k}]", sm


def analyze_regexes(ctx: AnalysisContext) -> Iterator[Message]:
    """IST0122 for match and CORS origin regexes RE2 does not compile (as Istio, withoutHeaders
    is not checked)."""
    for e, vs in ctx.of_kind(KIND, VirtualService):
        for where, path, sm in _string_matches(vs):
            if not sm.regex:
                continue
            problem = regex_problem(sm.regex)
            if problem is None:
                continue
            yield e.message(
                m.INVALID_REGEXP,
                _quoted(where),
                _quoted(sm.regex),
                f"error parsing regexp: {problem}",
                path=path,
            )


def analyze_deprecated_fields(ctx: AnalysisContext) -> Iterator[Message]:
    """IST0002 for the deprecated VirtualService fields Istio's deprecation analyzer names."""
    for e, vs in ctx.of_kind(KIND, VirtualService):
        for i, route in enumerate(vs.spec.http):
            delay = route.fault.delay if route.fault is not None else None
            if delay is not None and delay.percent:
                yield e.message(
                    m.DEPRECATED,
                    "HTTPRoute.fault.delay.percent is deprecated; use "
                    "HTTPRoute.fault.delay.percentage",
                    path=f"spec.http[{i}].fault.delay.percent",
                )
