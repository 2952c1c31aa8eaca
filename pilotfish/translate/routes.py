"""VirtualService HTTP rules -> Envoy routes (Istio's semantics, order preserved).

``http_routes(ctx, vs)`` turns each ``http[]`` rule into one route per applicable match (one
catch-all route when the rule has no match); the first route that matches wins in Envoy, as
in Istio. Matches that do not apply to this proxy are dropped before Envoy sees them:
``port`` (the listener/server port), ``sourceLabels`` and ``sourceNamespace`` (the proxy),
``gateways`` (``mesh`` for sidecars, ``ns/name`` for routers); a rule whose matches are all
dropped is skipped.

Actions: ``route`` (cluster or weighted_clusters with the weights as given), ``redirect``,
``directResponse``; plus ``rewrite``, ``timeout`` (Istio's default: 0s, disabled),
``retries`` (Istio's default policy when unset), ``fault`` and ``corsPolicy`` (per-route
filter config), ``mirror``/``mirrors``, ``headers``, and the consistent-hash ``hash_policy``
of the destination's DestinationRule. ``default_route`` is the route to a service when no
VirtualService applies.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2
from envoy.extensions.retry.priority.previous_priorities.v3 import (
    previous_priorities_config_pb2,
)
from envoy.type.matcher.v3 import metadata_pb2, regex_pb2, value_pb2
from envoy.type.v3 import percent_pb2

from pilotfish.api.virtualservice import (
    Destination,
    HeaderOperations,
    Headers,
    HTTPDirectResponse,
    HTTPMatchRequest,
    HTTPRedirect,
    HTTPRetry,
    HTTPRoute,
    Percent,
    StringMatch,
    jwt_claim_path,
)
from pilotfish.model.config import VirtualServiceConfig
from pilotfish.model.push_context import PushContext
from pilotfish.registry.types import Service
from pilotfish.translate.authz_matchers import (
    JWT_AUTHN_FILTER,
    JWT_PAYLOAD_KEY,
    metadata_matcher,
)
from pilotfish.translate.common import (
    ClusterKey,
    duration,
    given,
    pack,
    proto_duration,
    u32,
)
from pilotfish.translate.filters import (
    CORS_FILTER,
    FAULT_FILTER,
    cors_per_route,
    fault_per_route,
    string_match,
)
from pilotfish.translate.trafficpolicy import (
    effective_policy,
    route_hash_policies,
)

DEFAULT_RETRY_ON = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
REDIRECT_CODES = {
    301: rc.RedirectAction.MOVED_PERMANENTLY,
    302: rc.RedirectAction.FOUND,
    303: rc.RedirectAction.SEE_OTHER,
    307: rc.RedirectAction.TEMPORARY_REDIRECT,
    308: rc.RedirectAction.PERMANENT_REDIRECT,
}


@dataclass(frozen=True)
class RouteContext:
    """What route translation needs to know about where the routes will be used."""

    push: PushContext
    namespace: str  # the proxy's namespace (DestinationRule lookup)
    gateway: str  # "mesh" for sidecars, "ns/name" for routers
    port: int  # listener port (sidecar) or server port (router); 0: any
    labels: dict[str, str] = field(default_factory=dict)
    #: Resolves a destination without an explicit port to a service port.
    default_port: Callable[[Service | None], int] | None = None
    #: Routes of a gateway server that terminates TLS (a redirect's default scheme is https).
    is_tls: bool = False


# ---- matching -------------------------------------------------------------------------------


def _header(name: str, m: StringMatch, invert: bool = False) -> rc.HeaderMatcher:
    sm = string_match(m)
    h = rc.HeaderMatcher(name=name, invert_match=invert)
    if sm is None:
        h.present_match = True
    else:
        h.string_match.CopyFrom(sm)
    return h


def route_claim_matcher(
    claim: list[str], m: StringMatch, invert: bool = False
) -> metadata_pb2.MetadataMatcher:
    """A JWT claim match (``@request.auth.claims.a.b``), as Istio builds it: the payload
    ``jwt_authn`` verified (its dynamic metadata), the claim equal to the match or, for a
    list claim, containing it; a match without a value asks that the claim be present."""
    sm = string_match(m)
    if sm is None:
        value = value_pb2.ValueMatcher(present_match=True)
    else:
        value = value_pb2.ValueMatcher(
            or_match=value_pb2.OrMatcher(
                value_matchers=[
                    value_pb2.ValueMatcher(string_match=sm),
                    value_pb2.ValueMatcher(
                        list_match=value_pb2.ListMatcher(
                            one_of=value_pb2.ValueMatcher(string_match=sm)
                        )
                    ),
                ]
            )
        )
    out = metadata_matcher(JWT_AUTHN_FILTER, [JWT_PAYLOAD_KEY, *claim], value)
    out.invert = invert
    return out


def route_match(match: HTTPMatchRequest | None) -> rc.RouteMatch:
    """The Envoy match of one ``http[].match[]`` (None: the catch-all ``/`` prefix)."""
    out = rc.RouteMatch()
    if match is None:
        out.prefix = "/"
        return out
    uri = match.uri
    if uri is not None and uri.exact is not None:
        out.path = uri.exact
    elif uri is not None and uri.regex is not None:
        out.safe_regex.CopyFrom(regex_pb2.RegexMatcher(regex=uri.regex))
    else:
        out.prefix = (uri.prefix if uri is not None else None) or "/"
    if match.ignoreUriCase:
        out.case_sensitive.value = False
    for name, m in match.headers.items():
        if (claim := jwt_claim_path(name)) is not None:
            out.dynamic_metadata.append(route_claim_matcher(claim, m))
            continue
        out.headers.append(_header(name.lower(), m))
    for name, m in match.withoutHeaders.items():
        if (claim := jwt_claim_path(name)) is not None:
            out.dynamic_metadata.append(route_claim_matcher(claim, m, invert=True))
            continue
        h = _header(name.lower(), m, invert=True)
        if not h.present_match:
            # Istio: a request without the header at all matches ``withoutHeaders`` too
            # (Envoy's inverted matcher alone does not match a missing header).
            h.treat_missing_header_as_empty = True
        out.headers.append(h)
    if given(match.method):
        out.headers.append(_header(":method", match.method))
    if given(match.authority):
        out.headers.append(_header(":authority", match.authority))
    if given(match.scheme):
        out.headers.append(_header(":scheme", match.scheme))
    for name, m in match.queryParams.items():
        qp = rc.QueryParameterMatcher(name=name)
        sm = string_match(m)
        if sm is None:
            qp.present_match = True
        else:
            qp.string_match.CopyFrom(sm)
        out.query_parameters.append(qp)
    return out


def match_applies(ctx: RouteContext, vs: VirtualServiceConfig, match: HTTPMatchRequest) -> bool:
    """Does this match apply to the proxy and port the routes are built for?"""
    if ctx.gateway not in vs.match_gateways(match):
        return False
    port = match.port or 0
    if port and ctx.port and port != ctx.port:
        return False
    if any(ctx.labels.get(k) != v for k, v in match.sourceLabels.items()):
        return False
    src_ns = match.sourceNamespace
    return not (src_ns and src_ns != ctx.namespace)


# ---- actions --------------------------------------------------------------------------------


def _header_ops(
    spec: Headers | None,
) -> tuple[
    list[base_pb2.HeaderValueOption], list[str], list[base_pb2.HeaderValueOption], list[str]
]:
    """(request add, request remove, response add, response remove) from Istio ``headers``."""
    HVO = base_pb2.HeaderValueOption
    A = base_pb2.HeaderValueOption.HeaderAppendAction

    def ops(section: HeaderOperations | None) -> tuple[list[base_pb2.HeaderValueOption], list[str]]:
        if section is None:
            return [], []
        # :authority / Host are not headers Envoy lets a route set: they become a host
        # rewrite (``header_authority``), as Istio does.
        add = [
            HVO(
                header=base_pb2.HeaderValue(key=k, value=v),
                append_action=A.OVERWRITE_IF_EXISTS_OR_ADD,
            )
            for k, v in section.set.items()
            if k.lower() not in AUTHORITY_HEADERS
        ]
        add += [
            HVO(
                header=base_pb2.HeaderValue(key=k, value=v),
                append_action=A.APPEND_IF_EXISTS_OR_ADD,
            )
            for k, v in section.add.items()
            if k.lower() not in AUTHORITY_HEADERS
        ]
        return add, list(section.remove)

    if spec is None:
        return [], [], [], []
    req_add, req_rm = ops(spec.request)
    resp_add, resp_rm = ops(spec.response)
    return req_add, req_rm, resp_add, resp_rm


#: Request headers that name the host: setting one rewrites the host (Istio's rule).
AUTHORITY_HEADERS = (":authority", "host")


def header_authority(spec: Headers | None) -> str | None:
    """The host a ``headers.request`` ``set`` (or ``add``) of ``:authority``/``Host`` asks
    for; Istio turns it into a host rewrite."""
    if spec is None or spec.request is None:
        return None
    found = None
    for section in (spec.request.add, spec.request.set):
        for k, v in section.items():
            if k.lower() in AUTHORITY_HEADERS:
                found = v
    return found


def _apply_headers(target: Any, spec: Headers | None) -> None:
    req_add, req_rm, resp_add, resp_rm = _header_ops(spec)
    target.request_headers_to_add.extend(req_add)
    target.request_headers_to_remove.extend(req_rm)
    target.response_headers_to_add.extend(resp_add)
    target.response_headers_to_remove.extend(resp_rm)


def _fraction(value: float) -> base_pb2.RuntimeFractionalPercent:
    """A percentage (0-100, decimals allowed) as Istio writes it: per million."""
    return base_pb2.RuntimeFractionalPercent(
        default_value=percent_pb2.FractionalPercent(
            numerator=round(value * 10000),
            denominator=percent_pb2.FractionalPercent.MILLION,
        )
    )


def destination_cluster(
    ctx: RouteContext, vs: VirtualServiceConfig | None, dest: Destination
) -> ClusterKey:
    """The outbound cluster of a destination; the port defaults to the service's only port,
    else the port being routed."""
    host = dest.host
    if vs is not None:
        host = vs.resolve(host, ctx.push.settings.domain_suffix)
    port = (dest.port.number if dest.port is not None else None) or 0
    if not port:
        svc = ctx.push.service(host)
        if ctx.default_port is not None:
            port = ctx.default_port(svc)
        elif svc is not None and len(svc.ports) == 1:
            port = svc.ports[0].port
        else:
            port = ctx.port
    return ClusterKey.outbound(port, dest.subset or "", host)


def retry_policy(retries: HTTPRetry | None, consistent_hash: bool = False) -> rc.RetryPolicy | None:
    """Istio's ConvertPolicy: default policy when unset, none when attempts is 0."""
    policy = rc.RetryPolicy(
        retry_on=DEFAULT_RETRY_ON,
        num_retries=u32(2),
        retriable_status_codes=[503],
        host_selection_retry_max_attempts=5,
    )
    if not consistent_hash:
        policy.retry_host_predicate.append(
            rc.RetryPolicy.RetryHostPredicate(
                name="envoy.retry_host_predicates.previous_hosts",
                typed_config=pack(previous_hosts_pb2.PreviousHostsPredicate()),
            )
        )
    if retries is None:
        return policy
    attempts = retries.attempts or 0
    if attempts <= 0:
        return None
    policy.num_retries.value = attempts
    if retries.retryOn:
        conditions, codes = [], []
        for part in retries.retryOn.split(","):
            part = part.strip()
            if part.isdigit():
                codes.append(int(part))
            elif part:
                conditions.append(part)
        if codes and "retriable-status-codes" not in conditions:
            conditions.append("retriable-status-codes")
        policy.retry_on = ",".join(conditions)
        del policy.retriable_status_codes[:]
        policy.retriable_status_codes.extend(codes)
    if retries.perTryTimeout:
        policy.per_try_timeout.CopyFrom(proto_duration(retries.perTryTimeout))
    if retries.backoff:
        policy.retry_back_off.base_interval.CopyFrom(proto_duration(retries.backoff))
    if retries.retryIgnorePreviousHosts is False:
        # Istio's default is to avoid the hosts already tried; false allows them again.
        del policy.retry_host_predicate[:]
    if retries.retryRemoteLocalities:
        # Istio: each retry goes to the next priority (the next locality), Envoy's
        # previous_priorities predicate.
        policy.retry_priority.CopyFrom(
            rc.RetryPolicy.RetryPriority(
                name="envoy.retry_priorities.previous_priorities",
                typed_config=pack(
                    previous_priorities_config_pb2.PreviousPrioritiesConfig(update_frequency=2)
                ),
            )
        )
    return policy


def _mirror_policies(
    ctx: RouteContext, vs: VirtualServiceConfig | None, rule: HTTPRoute
) -> list[rc.RouteAction.RequestMirrorPolicy]:
    out = []
    mirrors: list[tuple[Destination, Percent | None]] = []
    if given(rule.mirror):
        mirrors.append((rule.mirror, rule.mirrorPercentage))
    for m in rule.mirrors:
        mirrors.append((m.destination, m.percentage))
    for dest, pct in mirrors:
        policy = rc.RouteAction.RequestMirrorPolicy(cluster=destination_cluster(ctx, vs, dest).name)
        if pct is not None and "value" in pct.model_fields_set:
            policy.runtime_fraction.CopyFrom(_fraction(pct.value))
        elif rule.mirrorPercent is not None:
            policy.runtime_fraction.CopyFrom(_fraction(float(rule.mirrorPercent)))
        else:
            policy.runtime_fraction.CopyFrom(_fraction(100.0))
        out.append(policy)
    return out


def _hash_for(ctx: RouteContext, cluster: ClusterKey) -> list[rc.RouteAction.HashPolicy]:
    dr = ctx.push.destination_rule(ctx.namespace, cluster.host)
    if dr is None:
        return []
    return route_hash_policies(effective_policy(dr, cluster.subset, cluster.port))


def _route_action(
    ctx: RouteContext,
    vs: VirtualServiceConfig | None,
    rule: HTTPRoute,
    match: HTTPMatchRequest | None,
) -> rc.RouteAction:
    action = rc.RouteAction()
    dests = rule.route
    first: ClusterKey | None = None
    if len(dests) == 1:
        first = destination_cluster(ctx, vs, dests[0].destination)
        action.cluster = first.name
        # Destination-level headers apply on the route when there is one destination.
    else:
        equal = all(d.weight is None for d in dests)
        wc = rc.WeightedCluster()
        for d in dests:
            weight = 1 if equal else (d.weight or 0)
            if weight <= 0:
                continue
            key = destination_cluster(ctx, vs, d.destination)
            first = first or key
            cw = wc.clusters.add(name=key.name, weight=u32(weight))
            _apply_headers(cw, d.headers)
            if (host := header_authority(d.headers)) is not None:
                cw.host_rewrite_literal = host
        action.weighted_clusters.CopyFrom(wc)
    hashes = _hash_for(ctx, first) if first is not None else []
    action.hash_policy.extend(hashes)
    timeout = rule.timeout
    action.timeout.CopyFrom(proto_duration(timeout) if timeout else duration(0))
    retry = retry_policy(rule.retries, consistent_hash=bool(hashes))
    if retry is not None:
        action.retry_policy.CopyFrom(retry)
    rewrite = rule.rewrite
    if rewrite is not None and rewrite.uri is not None:
        uri = match.uri if match is not None else None
        if uri is not None and uri.regex is not None:
            action.regex_rewrite.pattern.regex = uri.regex
            action.regex_rewrite.substitution = rewrite.uri
        else:
            action.prefix_rewrite = rewrite.uri
    if rewrite is not None and given(rewrite.uriRegexRewrite):
        rr = rewrite.uriRegexRewrite
        action.regex_rewrite.pattern.regex = rr.match or ""
        action.regex_rewrite.substitution = rr.rewrite or ""
    if rewrite is not None and rewrite.authority:
        action.host_rewrite_literal = rewrite.authority
    # headers.request.set of :authority/Host: on the destination (one destination), then on
    # the route, which wins as its headers apply last.
    for spec in ([dests[0].headers] if len(dests) == 1 else []) + [rule.headers]:
        if (host := header_authority(spec)) is not None:
            action.host_rewrite_literal = host
    action.request_mirror_policies.extend(_mirror_policies(ctx, vs, rule))
    return action


def _redirect(ctx: RouteContext, r: HTTPRedirect) -> rc.RedirectAction:
    """Istio's ApplyRedirect: ``derivePort: FROM_REQUEST_PORT`` is the port the routes are
    built for (Envoy cannot take it from the request); ``FROM_PROTOCOL_DEFAULT`` leaves the
    port to the scheme; a port that is the scheme's default (80 for http, 443 for https) is
    left out of the location."""
    out = rc.RedirectAction()
    if r.uri:
        out.path_redirect = r.uri
    if r.authority:
        out.host_redirect = r.authority
    if r.scheme:
        out.scheme_redirect = r.scheme
    if r.port is not None or r.derivePort is not None:
        port = r.port or (ctx.port if r.derivePort == "FROM_REQUEST_PORT" else 0)
        scheme = r.scheme or ("https" if ctx.is_tls else "http")
        if (scheme, port) not in (("http", 80), ("https", 443)):
            out.port_redirect = port
    code = r.redirectCode or 301
    out.response_code = REDIRECT_CODES.get(code, rc.RedirectAction.MOVED_PERMANENTLY)
    return out


def _direct(d: HTTPDirectResponse) -> rc.DirectResponseAction:
    out = rc.DirectResponseAction(status=d.status or 200)
    body = d.body
    if body is not None and body.string is not None:
        out.body.inline_string = body.string
    elif body is not None and body.bytes is not None:
        out.body.inline_bytes = base64.b64decode(body.bytes)
    return out


def http_route(
    ctx: RouteContext,
    vs: VirtualServiceConfig | None,
    rule: HTTPRoute,
    match: HTTPMatchRequest | None,
) -> rc.Route:
    """One Envoy route for one ``http[]`` rule and one of its matches (None: catch-all)."""
    name = rule.name or ""
    if match is not None and match.name:
        name = f"{name}.{match.name}" if name else match.name
    route = rc.Route(name=name, match=route_match(match))
    if match is not None and match.statPrefix:
        route.stat_prefix = match.statPrefix
    if given(rule.redirect):
        route.redirect.CopyFrom(_redirect(ctx, rule.redirect))
    elif given(rule.directResponse):
        route.direct_response.CopyFrom(_direct(rule.directResponse))
    else:
        route.route.CopyFrom(_route_action(ctx, vs, rule, match))
        if len(rule.route) == 1:
            _apply_headers(route, rule.route[0].headers)
    _apply_headers(route, rule.headers)
    if given(rule.fault):
        fault = fault_per_route(rule.fault)
        if fault is not None:
            route.typed_per_filter_config[FAULT_FILTER].CopyFrom(fault)
    if given(rule.corsPolicy):
        cors = cors_per_route(rule.corsPolicy)
        if cors is not None:
            route.typed_per_filter_config[CORS_FILTER].CopyFrom(cors)
    return route


def http_routes(ctx: RouteContext, vs: VirtualServiceConfig) -> list[rc.Route]:
    """Routes for every applicable (rule, match) of ``vs``, in order."""
    out = []
    for rule in vs.http:
        matches = rule.match
        if not matches:
            # A rule without matches still only applies to the VirtualService's gateways.
            if ctx.gateway in vs.gateways:
                out.append(http_route(ctx, vs, rule, None))
            continue
        for m in matches:
            if match_applies(ctx, vs, m):
                out.append(http_route(ctx, vs, rule, m))
    return out


def default_route(ctx: RouteContext, svc: Service, port: int) -> rc.Route:
    """Istio's ``default`` route: everything to the service's subset-less cluster."""
    cluster = ClusterKey.outbound(port, "", svc.hostname)
    action = rc.RouteAction(cluster=cluster.name, timeout=duration(0))
    hashes = _hash_for(ctx, cluster)
    action.hash_policy.extend(hashes)
    retry = retry_policy(None, consistent_hash=bool(hashes))
    if retry is not None:
        action.retry_policy.CopyFrom(retry)
    return rc.Route(name="default", match=rc.RouteMatch(prefix="/"), route=action)
