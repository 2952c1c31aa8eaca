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
from envoy.type.matcher.v3 import regex_pb2
from envoy.type.v3 import percent_pb2

from pilotfish.api.objects import Spec
from pilotfish.model.config import VirtualServiceConfig
from pilotfish.model.push_context import PushContext
from pilotfish.registry.types import Service
from pilotfish.translate.common import duration, istio_duration, outbound_cluster_name, pack, u32
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


# ---- matching -------------------------------------------------------------------------------


def _header(name: str, m: Spec, invert: bool = False) -> rc.HeaderMatcher:
    sm = string_match(m or {})
    h = rc.HeaderMatcher(name=name, invert_match=invert)
    if sm is None:
        h.present_match = True
    else:
        h.string_match.CopyFrom(sm)
    return h


def route_match(match: Spec) -> rc.RouteMatch:
    out = rc.RouteMatch()
    ignore_case = bool(match.get("ignoreUriCase"))
    uri: Spec = match.get("uri") or {}
    if "exact" in uri:
        out.path = str(uri["exact"])
    elif "regex" in uri:
        out.safe_regex.CopyFrom(regex_pb2.RegexMatcher(regex=str(uri["regex"])))
    else:
        out.prefix = str(uri.get("prefix") or "/")
    if ignore_case:
        out.case_sensitive.value = False
    for name, m in (match.get("headers") or {}).items():
        out.headers.append(_header(str(name).lower(), m))
    for name, m in (match.get("withoutHeaders") or {}).items():
        out.headers.append(_header(str(name).lower(), m, invert=True))
    if match.get("method"):
        out.headers.append(_header(":method", match["method"]))
    if match.get("authority"):
        out.headers.append(_header(":authority", match["authority"]))
    if match.get("scheme"):
        out.headers.append(_header(":scheme", match["scheme"]))
    for name, m in (match.get("queryParams") or {}).items():
        qp = rc.QueryParameterMatcher(name=str(name))
        sm = string_match(m or {})
        if sm is None:
            qp.present_match = True
        else:
            qp.string_match.CopyFrom(sm)
        out.query_parameters.append(qp)
    return out


def match_applies(ctx: RouteContext, vs: VirtualServiceConfig, match: Spec) -> bool:
    """Does this match apply to the proxy and port the routes are built for?"""
    if ctx.gateway not in vs.match_gateways(match):
        return False
    port = int(match.get("port") or 0)
    if port and ctx.port and port != ctx.port:
        return False
    src = match.get("sourceLabels") or {}
    if any(ctx.labels.get(str(k)) != str(v) for k, v in src.items()):
        return False
    src_ns = match.get("sourceNamespace")
    return not (src_ns and src_ns != ctx.namespace)


# ---- actions --------------------------------------------------------------------------------


def _header_ops(
    spec: Spec | None,
) -> tuple[
    list[base_pb2.HeaderValueOption], list[str], list[base_pb2.HeaderValueOption], list[str]
]:
    """(request add, request remove, response add, response remove) from Istio ``headers``."""
    spec = spec or {}
    HVO = base_pb2.HeaderValueOption
    A = base_pb2.HeaderValueOption.HeaderAppendAction

    def ops(section: Spec) -> tuple[list[base_pb2.HeaderValueOption], list[str]]:
        add = [
            HVO(
                header=base_pb2.HeaderValue(key=str(k), value=str(v)),
                append_action=A.OVERWRITE_IF_EXISTS_OR_ADD,
            )
            for k, v in (section.get("set") or {}).items()
        ]
        add += [
            HVO(
                header=base_pb2.HeaderValue(key=str(k), value=str(v)),
                append_action=A.APPEND_IF_EXISTS_OR_ADD,
            )
            for k, v in (section.get("add") or {}).items()
        ]
        return add, [str(h) for h in section.get("remove") or ()]

    req_add, req_rm = ops(spec.get("request") or {})
    resp_add, resp_rm = ops(spec.get("response") or {})
    return req_add, req_rm, resp_add, resp_rm


def _apply_headers(target: Any, spec: Spec | None) -> None:
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


def destination_cluster(ctx: RouteContext, vs: VirtualServiceConfig | None, dest: Spec) -> str:
    """``outbound|PORT|SUBSET|HOST`` of a destination; the port defaults to the service's only
    port, else the port being routed."""
    host = str(dest.get("host") or "")
    if vs is not None:
        host = vs.resolve(host, ctx.push.settings.domain_suffix)
    port = int((dest.get("port") or {}).get("number") or 0)
    if not port:
        svc = ctx.push.service(host)
        if ctx.default_port is not None:
            port = ctx.default_port(svc)
        elif svc is not None and len(svc.ports) == 1:
            port = svc.ports[0].port
        else:
            port = ctx.port
    return outbound_cluster_name(port, str(dest.get("subset") or ""), host)


def retry_policy(retries: Spec | None, consistent_hash: bool = False) -> rc.RetryPolicy | None:
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
    attempts = int(retries.get("attempts") or 0)
    if attempts <= 0:
        return None
    policy.num_retries.value = attempts
    if retries.get("retryOn"):
        conditions, codes = [], []
        for part in str(retries["retryOn"]).split(","):
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
    if retries.get("perTryTimeout"):
        policy.per_try_timeout.CopyFrom(istio_duration(str(retries["perTryTimeout"])))
    return policy


def _mirror_policies(
    ctx: RouteContext, vs: VirtualServiceConfig | None, rule: Spec
) -> list[rc.RouteAction.RequestMirrorPolicy]:
    out = []
    mirrors: list[tuple[Spec, Spec | None]] = []
    if rule.get("mirror"):
        mirrors.append((rule["mirror"], rule.get("mirrorPercentage")))
    for m in rule.get("mirrors") or ():
        mirrors.append((m.get("destination") or {}, m.get("percentage")))
    for dest, pct in mirrors:
        policy = rc.RouteAction.RequestMirrorPolicy(cluster=destination_cluster(ctx, vs, dest))
        if pct is not None and pct.get("value") is not None:
            policy.runtime_fraction.CopyFrom(_fraction(float(pct["value"])))
        elif rule.get("mirrorPercent") is not None:
            policy.runtime_fraction.CopyFrom(_fraction(float(rule["mirrorPercent"])))
        else:
            policy.runtime_fraction.CopyFrom(_fraction(100.0))
        out.append(policy)
    return out


def _hash_for(ctx: RouteContext, cluster: str) -> list[rc.RouteAction.HashPolicy]:
    _, port, subset, host = cluster.split("|", 3)
    dr = ctx.push.destination_rule(ctx.namespace, host)
    if dr is None:
        return []
    return route_hash_policies(effective_policy(dr, subset, int(port)))


def _route_action(
    ctx: RouteContext, vs: VirtualServiceConfig | None, rule: Spec, match: Spec | None
) -> rc.RouteAction:
    action = rc.RouteAction()
    dests = list(rule.get("route") or ())
    if len(dests) == 1:
        action.cluster = destination_cluster(ctx, vs, dests[0].get("destination") or {})
        # Destination-level headers apply on the route when there is one destination.
    else:
        given = [d.get("weight") for d in dests]
        equal = all(w is None for w in given)
        wc = rc.WeightedCluster()
        for d in dests:
            weight = 1 if equal else int(d.get("weight") or 0)
            if weight <= 0:
                continue
            cw = wc.clusters.add(
                name=destination_cluster(ctx, vs, d.get("destination") or {}), weight=u32(weight)
            )
            _apply_headers(cw, d.get("headers"))
        action.weighted_clusters.CopyFrom(wc)
    first = action.cluster or (
        action.weighted_clusters.clusters[0].name if action.weighted_clusters.clusters else ""
    )
    hashes = _hash_for(ctx, first) if first else []
    action.hash_policy.extend(hashes)
    timeout = rule.get("timeout")
    action.timeout.CopyFrom(istio_duration(str(timeout)) if timeout else duration(0))
    retry = retry_policy(rule.get("retries"), consistent_hash=bool(hashes))
    if retry is not None:
        action.retry_policy.CopyFrom(retry)
    rewrite: Spec = rule.get("rewrite") or {}
    if rewrite.get("uri") is not None:
        uri = (match or {}).get("uri") or {}
        if "regex" in uri:
            action.regex_rewrite.pattern.regex = str(uri["regex"])
            action.regex_rewrite.substitution = str(rewrite["uri"])
        else:
            action.prefix_rewrite = str(rewrite["uri"])
    if rewrite.get("uriRegexRewrite"):
        rr = rewrite["uriRegexRewrite"]
        action.regex_rewrite.pattern.regex = str(rr.get("match") or "")
        action.regex_rewrite.substitution = str(rr.get("rewrite") or "")
    if rewrite.get("authority"):
        action.host_rewrite_literal = str(rewrite["authority"])
    action.request_mirror_policies.extend(_mirror_policies(ctx, vs, rule))
    return action


def _redirect(rule: Spec) -> rc.RedirectAction:
    r: Spec = rule["redirect"]
    out = rc.RedirectAction()
    if r.get("uri"):
        out.path_redirect = str(r["uri"])
    if r.get("authority"):
        out.host_redirect = str(r["authority"])
    if r.get("port"):
        out.port_redirect = int(r["port"])
    if r.get("scheme"):
        out.scheme_redirect = str(r["scheme"])
    code = int(r.get("redirectCode") or 301)
    out.response_code = REDIRECT_CODES.get(code, rc.RedirectAction.MOVED_PERMANENTLY)
    return out


def _direct(rule: Spec) -> rc.DirectResponseAction:
    d: Spec = rule["directResponse"]
    out = rc.DirectResponseAction(status=int(d.get("status") or 200))
    body: Spec = d.get("body") or {}
    if body.get("string") is not None:
        out.body.inline_string = str(body["string"])
    elif body.get("bytes") is not None:
        out.body.inline_bytes = base64.b64decode(str(body["bytes"]))
    return out


def http_route(
    ctx: RouteContext, vs: VirtualServiceConfig | None, rule: Spec, match: Spec | None
) -> rc.Route:
    """One Envoy route for one ``http[]`` rule and one of its matches (None: catch-all)."""
    name = str(rule.get("name") or "")
    if match is not None and match.get("name"):
        name = f"{name}.{match['name']}" if name else str(match["name"])
    route = rc.Route(name=name, match=route_match(match or {}))
    if rule.get("redirect"):
        route.redirect.CopyFrom(_redirect(rule))
    elif rule.get("directResponse"):
        route.direct_response.CopyFrom(_direct(rule))
    else:
        route.route.CopyFrom(_route_action(ctx, vs, rule, match))
        dests: list[Spec] = list(rule.get("route") or ())
        if len(dests) == 1:
            _apply_headers(route, dests[0].get("headers"))
    _apply_headers(route, rule.get("headers"))
    if rule.get("fault"):
        fault = fault_per_route(rule["fault"])
        if fault is not None:
            route.typed_per_filter_config[FAULT_FILTER].CopyFrom(fault)
    if rule.get("corsPolicy"):
        cors = cors_per_route(rule["corsPolicy"])
        if cors is not None:
            route.typed_per_filter_config[CORS_FILTER].CopyFrom(cors)
    return route


def http_routes(ctx: RouteContext, vs: VirtualServiceConfig) -> list[rc.Route]:
    """Routes for every applicable (rule, match) of ``vs``, in order."""
    out = []
    for rule in vs.http:
        matches = rule.get("match")
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
    cluster = outbound_cluster_name(port, "", svc.hostname)
    action = rc.RouteAction(cluster=cluster, timeout=duration(0))
    hashes = _hash_for(ctx, cluster)
    action.hash_policy.extend(hashes)
    retry = retry_policy(None, consistent_hash=bool(hashes))
    if retry is not None:
        action.retry_policy.CopyFrom(retry)
    return rc.Route(name="default", match=rc.RouteMatch(prefix="/"), route=action)
