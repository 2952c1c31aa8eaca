"""VirtualService semantics, after Istio's ``ValidateVirtualService`` and ``validateHTTPRoute``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pilotfish.api.duration import parse_duration
from pilotfish.api.virtualservice import (
    JWT_CLAIM_PREFIX,
    CorsPolicy,
    Destination,
    Headers,
    HTTPFaultInjection,
    HTTPMatchRequest,
    HTTPRedirect,
    HTTPRetry,
    HTTPRewrite,
    HTTPRoute,
    HTTPRouteDestination,
    L4MatchAttributes,
    RouteDestination,
    StringMatch,
    TCPRoute,
    TLSMatchAttributes,
    TLSRoute,
    VirtualService,
    jwt_claim_path,
)
from pilotfish.config.validation.common import (
    Errors,
    check_export_to,
    check_labels,
    duration_error,
    fqdn_error,
    header_name_error,
    header_operation_name_error,
    header_value_error,
    host_subset_of,
    hosts_overlap,
    is_dns1123_label,
    is_ip,
    percent_error,
    percentage_error,
    port_error,
    regex_error,
    subnet_error,
    wildcard_domain_error,
)

MESH_GATEWAY = "mesh"

#: Envoy's x-envoy-retry-on and x-envoy-retry-grpc-on policies Istio accepts.
RETRY_ON_POLICIES = frozenset(
    {
        "5xx",
        "gateway-error",
        "reset",
        "reset-before-request",
        "connect-failure",
        "retriable-4xx",
        "refused-stream",
        "retriable-status-codes",
        "retriable-headers",
        "envoy-ratelimited",
        "http3-post-connect-failure",
        "cancelled",
        "deadline-exceeded",
        "internal",
        "resource-exhausted",
        "unavailable",
    }
)
#: Status codes Go's net/http knows (Istio accepts these as retryOn entries).
_HTTP_STATUS_CODES = frozenset(
    {100, 101, 102, 103, 200, 201, 202, 203, 204, 205, 206, 207, 208, 226}
    | {300, 301, 302, 303, 304, 305, 307, 308}
    | set(range(400, 419))
    | {421, 422, 423, 424, 425, 426, 428, 429, 431, 451}
    | set(range(500, 509))
    | {510, 511}
)
HTTP_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE"}
)
GRPC_STATUSES = frozenset(
    {
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    }
)


def is_jwt_claim_key(name: str) -> bool:
    """``@request.auth.claims.groups`` / ``@request.auth.claims[groups]`` header match keys."""
    return name.startswith(JWT_CLAIM_PREFIX + ".") or name.startswith(JWT_CLAIM_PREFIX + "[")


def jwt_claim_key_error(name: str) -> str | None:
    if jwt_claim_path(name) is None:
        return (
            f"invalid JWT claim key {name}: use {JWT_CLAIM_PREFIX}.a.b or {JWT_CLAIM_PREFIX}[a][b]"
        )
    return None


def validate_virtual_service(vs: VirtualService, errs: Errors, namespace: str) -> None:
    spec = vs.spec
    if not spec.hosts:
        # a delegate VirtualService
        if spec.gateways:
            errs.add("spec.gateways", "delegate virtual service must have no gateways specified")
        if spec.tls:
            errs.add("spec.tls", "delegate virtual service must have no tls route specified")
        if spec.tcp:
            errs.add("spec.tcp", "delegate virtual service must have no tcp route specified")

    applies_to_gateway = bool(spec.gateways) and MESH_GATEWAY not in spec.gateways
    applies_to_mesh = not applies_to_gateway
    check_gateway_names(errs, "spec.gateways", spec.gateways)

    if not applies_to_gateway:
        for i, route in enumerate(spec.http):
            for j, match in enumerate(route.match):
                for field, headers in (
                    ("headers", match.headers),
                    ("withoutHeaders", match.withoutHeaders),
                ):
                    for key in headers:
                        if is_jwt_claim_key(key):
                            errs.add(
                                f"spec.http[{i}].match[{j}].{field}[{key}]",
                                f"JWT claim based routing (key: {key}) is only supported for "
                                f"gateway, found no gateways: {list(spec.gateways)}",
                            )

    all_valid = True
    for i, host in enumerate(spec.hosts):
        err = wildcard_domain_error(host)
        if err and not is_ip(host):
            errs.add(f"spec.hosts[{i}]", err)
            all_valid = False
        elif not err and applies_to_mesh and host == "*":
            errs.add(
                f"spec.hosts[{i}]",
                "wildcard host * is not allowed for virtual services bound to the mesh gateway",
            )
            all_valid = False
    if all_valid:
        for i, a in enumerate(spec.hosts):
            for b in spec.hosts[i + 1 :]:
                if hosts_overlap(a, b):
                    errs.add("spec.hosts", f"duplicate hosts in virtual service: {a} & {b}")

    if not spec.http and not spec.tcp and not spec.tls:
        errs.add("spec", "http, tcp or tls must be provided in virtual service")
    for i, route in enumerate(spec.http):
        _http_route(errs, f"spec.http[{i}]", route, delegate=not spec.hosts)
    for i, tls in enumerate(spec.tls):
        _tls_route(errs, f"spec.tls[{i}]", tls, vs)
        _tls_at_gateways(errs, f"spec.tls[{i}]", tls, spec.gateways)
    for i, tcp in enumerate(spec.tcp):
        _tcp_route(errs, f"spec.tcp[{i}]", tcp)
        _tcp_at_gateways(errs, f"spec.tcp[{i}]", tcp, spec.gateways)
    check_export_to(errs, "spec.exportTo", namespace, spec.exportTo)


def check_gateway_names(errs: Errors, path: str, names: Sequence[str]) -> None:
    """Istio validateGatewayNames: ``name``, ``namespace/name`` or a legacy FQDN."""
    for i, name in enumerate(names):
        ns, slash, gw = name.partition("/")
        if not slash:
            errs.add(f"{path}[{i}]", fqdn_error(name))
            continue
        if not ns or not gw:
            errs.add(f"{path}[{i}]", "config namespace and gateway name cannot be empty")
        if not is_dns1123_label(ns):
            errs.add(f"{path}[{i}]", f'invalid value for namespace: "{ns}"')
        if not is_dns1123_label(gw):
            errs.add(f"{path}[{i}]", f'invalid value for gateway name: "{gw}"')


# --- HTTP ------------------------------------------------------------------------------------


def _http_route(errs: Errors, path: str, r: HTTPRoute, delegate: bool) -> None:
    _conflicts(errs, path, r, delegate)
    for j, match in enumerate(r.match):
        _match(errs, f"{path}.match[{j}]", match)
    _headers(errs, f"{path}.headers", r.headers)
    _cors(errs, f"{path}.corsPolicy", r.corsPolicy)
    _fault(errs, f"{path}.fault", r.fault)
    if r.mirrorPercent is not None and r.mirrorPercent > 100:
        errs.add(
            f"{path}.mirrorPercent",
            f"mirror_percent must have a max value of 100 (it has {r.mirrorPercent})",
        )
    if r.mirrorPercentage is not None:
        value = r.mirrorPercentage.value
        if value > 100:
            errs.add(
                f"{path}.mirrorPercentage",
                f"mirror_percentage must have a max value of 100 (it has {value:f})",
            )
        if value < 0:
            errs.add(
                f"{path}.mirrorPercentage",
                f"mirror_percentage must have a min value of 0 (it has {value:f})",
            )
    if r.mirror is not None:
        _destination(errs, f"{path}.mirror", r.mirror)
    for k, mirror in enumerate(r.mirrors):
        mpath = f"{path}.mirrors[{k}]"
        _destination(errs, f"{mpath}.destination", mirror.destination)
        if mirror.percentage is not None:
            value = mirror.percentage.value
            if value > 100:
                errs.add(
                    f"{mpath}.percentage",
                    f"mirror percentage must have a max value of 100 (it has {value:f})",
                )
            if value < 0:
                errs.add(
                    f"{mpath}.percentage",
                    f"mirror percentage must have a min value of 0 (it has {value:f})",
                )
    _redirect(errs, f"{path}.redirect", r.redirect)
    if r.directResponse is not None:
        status = r.directResponse.status
        if status < 200 or status > 599:
            errs.add(
                f"{path}.directResponse.status", f"HTTP status {status} is not in range 200-599"
            )
        body = r.directResponse.body
        if body is not None:
            if body.string is not None and body.bytes is not None:
                errs.add(f"{path}.directResponse.body", "only one of string or bytes may be set")
            size = len(body.string or body.bytes or "")
            if size > 1024 * 1024:
                errs.add(
                    f"{path}.directResponse.body",
                    "large direct_responses may impact control plane performance, "
                    "must be less than 1MB",
                )
    _retries(errs, f"{path}.retries", r.retries)
    _rewrite(errs, f"{path}.rewrite", r.rewrite, r.headers)
    _http_destinations(errs, f"{path}.route", r.route)
    errs.add(f"{path}.timeout", duration_error(r.timeout, allow_zero=True))


def _conflicts(errs: Errors, path: str, r: HTTPRoute, delegate: bool) -> None:
    """Istio validateHTTPRouteConflict."""
    if r.delegate is not None and not delegate:
        if not r.delegate.name:
            errs.add(f"{path}.delegate.name", "delegate name is required")
        elif fqdn_error(r.delegate.name):
            errs.add(f"{path}.delegate.name", f'invalid delegate name "{r.delegate.name}"')
        if r.delegate.namespace and not is_dns1123_label(r.delegate.namespace):
            errs.add(
                f"{path}.delegate.namespace",
                f'invalid delegate namespace "{r.delegate.namespace}"',
            )
        label = f"root HTTP route {r.name}" if r.name else "root HTTP route"
        if r.redirect is not None:
            errs.add(path, f"{label} must not specify redirect")
        if r.route:
            errs.add(path, f"{label} must not specify route")
        return
    if delegate and r.delegate is not None:
        errs.add(f"{path}.delegate", "delegate HTTP route cannot contain delegate")
    if r.redirect is not None:
        if r.route:
            errs.add(path, "HTTP route cannot contain both route and redirect")
        if r.fault is not None:
            errs.add(path, "HTTP route cannot contain both fault and redirect")
        if r.rewrite is not None:
            errs.add(path, "HTTP route rule cannot contain both rewrite and redirect")
        if r.directResponse is not None:
            errs.add(path, "HTTP route rule cannot contain both direct_response and redirect")
    elif r.directResponse is not None:
        if r.route:
            errs.add(path, "HTTP route cannot contain both route and direct_response")
        if r.fault is not None:
            errs.add(path, "HTTP route cannot contain both fault and direct_response")
        if r.rewrite is not None:
            errs.add(path, "HTTP route rule cannot contain both rewrite and direct_response")
    elif not r.route:
        errs.add(path, "HTTP route, redirect or direct_response is required")
    if r.mirror is not None and r.mirrors:
        errs.add(path, "HTTP route cannot contain both mirror and mirrors")


def _string_match(errs: Errors, path: str, sm: StringMatch | None, where: str) -> None:
    if sm is None:
        return
    set_ = [f for f in ("exact", "prefix", "regex") if getattr(sm, f) is not None]
    if len(set_) > 1:
        errs.add(path, f"only one of exact, prefix or regex may be set (found {', '.join(set_)})")
    if sm.prefix == "":
        errs.add(f"{path}.prefix", f'"{where}": prefix string match should not be empty')
    if sm.regex is not None:
        if sm.regex == "":
            errs.add(f"{path}.regex", f'"{where}": regex string match should not be empty')
        else:
            errs.add(f"{path}.regex", regex_error(sm.regex, where))


def _match(errs: Errors, path: str, m: HTTPMatchRequest) -> None:
    for field in ("uri", "scheme", "method", "authority"):
        _string_match(errs, f"{path}.{field}", getattr(m, field), field)
    for field, headers in (("headers", m.headers), ("withoutHeaders", m.withoutHeaders)):
        for name, sm in headers.items():
            if not is_jwt_claim_key(name):
                errs.add(f"{path}.{field}[{name}]", header_name_error(name, pseudo=True))
            else:
                errs.add(f"{path}.{field}[{name}]", jwt_claim_key_error(name))
            _string_match(errs, f"{path}.{field}[{name}]", sm, field)
    for name, sm in m.queryParams.items():
        _string_match(errs, f"{path}.queryParams[{name}]", sm, "queryParams")
    if m.port is not None and m.port != 0:
        errs.add(f"{path}.port", port_error(m.port))
    check_labels(errs, f"{path}.sourceLabels", m.sourceLabels)
    check_gateway_names(errs, f"{path}.gateways", m.gateways)
    if m.sourceNamespace and not is_dns1123_label(m.sourceNamespace):
        errs.add(f"{path}.sourceNamespace", f"sourceNamespace match {m.sourceNamespace} is invalid")


def _headers(errs: Errors, path: str, h: Headers | None) -> None:
    if h is None:
        return
    for side, ops in (("request", h.request), ("response", h.response)):
        if ops is None:
            continue
        allow_authority = side == "request"
        for op in ("set", "add"):
            for name, value in getattr(ops, op).items():
                p = f"{path}.{side}.{op}[{name}]"
                errs.add(p, header_operation_name_error(name, allow_authority))
                errs.add(p, header_value_error(value))
        for k, name in enumerate(ops.remove):
            errs.add(f"{path}.{side}.remove[{k}]", header_operation_name_error(name, False))


def _cors(errs: Errors, path: str, c: CorsPolicy | None) -> None:
    if c is None:
        return
    for i, origin in enumerate(c.allowOrigins):
        value = origin.exact or origin.prefix or origin.regex
        if not value:
            errs.add(
                f"{path}.allowOrigins[{i}]",
                f"'{value or ''}' is not a valid match type for CORS allow origins",
            )
        elif origin.regex:
            errs.add(
                f"{path}.allowOrigins[{i}].regex",
                regex_error(origin.regex, "corsPolicy.allowOrigins"),
            )
    for i, method in enumerate(c.allowMethods):
        if method not in HTTP_METHODS:
            errs.add(f"{path}.allowMethods[{i}]", f'"{method}" is not a supported HTTP method')
    for field in ("allowHeaders", "exposeHeaders"):
        for i, name in enumerate(getattr(c, field)):
            if name != "*":
                errs.add(f"{path}.{field}[{i}]", header_name_error(name))
    if c.maxAge is not None:
        err = duration_error(c.maxAge)
        errs.add(f"{path}.maxAge", err)
        if err is None and not parse_duration(c.maxAge).is_integer():
            errs.add(f"{path}.maxAge", "max_age duration is accurate only to seconds precision")


def _fault(errs: Errors, path: str, f: HTTPFaultInjection | None) -> None:
    if f is None:
        return
    if f.abort is None and f.delay is None:
        errs.add(path, "HTTP fault injection must have an abort and/or a delay")
    if f.abort is not None:
        a = f.abort
        if a.percentage is not None:
            errs.add(f"{path}.abort.percentage", percentage_error(a.percentage.value))
        kinds = [k for k in ("httpStatus", "grpcStatus", "http2Error") if getattr(a, k) is not None]
        if len(kinds) > 1:
            errs.add(f"{path}.abort", f"only one of {', '.join(kinds)} may be set")
        if a.httpStatus is not None and not 200 <= a.httpStatus <= 599:
            errs.add(
                f"{path}.abort.httpStatus", f"HTTP status {a.httpStatus} is not in range 200-599"
            )
        if a.grpcStatus is not None and a.grpcStatus not in GRPC_STATUSES:
            errs.add(
                f"{path}.abort.grpcStatus",
                f'gRPC status "{a.grpcStatus}" is not supported. See '
                "https://github.com/grpc/grpc/blob/master/doc/statuscodes.md for a list of "
                "supported codes, for example 'NOT_FOUND'",
            )
        if a.http2Error is not None:
            errs.add(f"{path}.abort.http2Error", "HTTP/2 abort fault injection not supported yet")
        if not kinds:
            errs.warn(f"{path}.abort", "abort configured, but error type not set")
    if f.delay is not None:
        d = f.delay
        if d.percentage is not None:
            errs.add(f"{path}.delay.percentage", percentage_error(d.percentage.value))
        errs.add(f"{path}.delay.percent", percent_error(d.percent))
        if d.fixedDelay is not None and d.exponentialDelay is not None:
            errs.add(f"{path}.delay", "only one of fixedDelay or exponentialDelay may be set")
        errs.add(f"{path}.delay.fixedDelay", duration_error(d.fixedDelay))
        if d.exponentialDelay is not None:
            errs.add(f"{path}.delay.exponentialDelay", duration_error(d.exponentialDelay))
            errs.add(f"{path}.delay.exponentialDelay", "exponentialDelay not supported yet")
        if d.fixedDelay is None and d.exponentialDelay is None:
            errs.add(f"{path}.delay.fixedDelay", "Required value: delay must set fixedDelay")


def _redirect(errs: Errors, path: str, r: HTTPRedirect | None) -> None:
    if r is None:
        return
    if not r.uri and not r.authority and r.port is None and r.derivePort is None and not r.scheme:
        errs.add(path, "redirect must specify URI, authority, scheme, or port")
    if r.port is not None and r.derivePort is not None:
        errs.add(path, "only one of port or derivePort may be set")
    if r.redirectCode and not 300 <= r.redirectCode <= 399:
        errs.add(
            f"{path}.redirectCode", f"{r.redirectCode} is not a valid redirect code, must be 3xx"
        )
    if r.scheme and r.scheme not in ("http", "https"):
        errs.add(f"{path}.scheme", 'invalid redirect scheme, must be "http" or "https"')
    if r.port:
        errs.add(f"{path}.port", port_error(r.port))


def _retries(errs: Errors, path: str, r: HTTPRetry | None) -> None:
    if r is None:
        return
    attempts = r.attempts or 0
    if attempts < 0:
        errs.add(f"{path}.attempts", "attempts cannot be negative")
    if attempts == 0 and (
        r.perTryTimeout is not None or r.retryOn or r.retryRemoteLocalities is not None
    ):
        errs.add(path, "http retry policy configured when attempts are set to 0 (disabled)")
    errs.add(f"{path}.perTryTimeout", duration_error(r.perTryTimeout))
    errs.add(f"{path}.backoff", duration_error(r.backoff))
    if r.retryOn:
        for policy in r.retryOn.split(","):
            code = int(policy) if policy.isdigit() else 0
            if code not in _HTTP_STATUS_CODES and policy not in RETRY_ON_POLICIES:
                errs.add(f"{path}.retryOn", f'"{policy}" is not a valid retryOn policy')


def _rewrite(errs: Errors, path: str, r: HTTPRewrite | None, headers: Headers | None) -> None:
    if r is None:
        return
    if r.uri and r.uriRegexRewrite is not None:
        errs.add(path, "rewrite may only contain one of URI or UriRegexRewrite")
    if not r.uri and r.uriRegexRewrite is None and not r.authority:
        errs.add(
            path,
            "rewrite must specify at least one of URI, UriRegexRewrite, or authority. "
            "Only one of URI or UriRegexRewrite may be specified",
        )
    rr = r.uriRegexRewrite
    if rr is not None:
        if not rr.match or not rr.rewrite:
            errs.add(
                f"{path}.uriRegexRewrite",
                "UriRegexRewrite requires both Rewrite and Match fields to be specified",
            )
        elif (err := regex_error(rr.match, "HTTPRewrite.UriRegexRewrite.Match")) is not None:
            errs.add(f"{path}.uriRegexRewrite.match", f"UriRegexRewrite has errors: {err}")
    if r.authority and headers is not None and headers.request is not None:
        for op in (headers.request.set, headers.request.add):
            for key, value in op.items():
                if key.lower() in (":authority", "host"):
                    errs.add(
                        path,
                        f'authority header cannot be set multiple times: have "{r.authority}", '
                        f'attempting to set "{value}"',
                    )


def _destination(errs: Errors, path: str, d: Destination) -> None:
    """Istio validateDestination."""
    if not d.host:
        errs.add(f"{path}.host", "Required value: destination host is required")
    elif d.host == "*":
        errs.add(f"{path}.host", f"invalid destination host {d.host}")
    else:
        errs.add(f"{path}.host", wildcard_domain_error(d.host))
    if d.subset is not None:
        if d.subset == "":
            errs.add(f"{path}.subset", "subset name cannot be empty")
        elif not is_dns1123_label(d.subset):
            errs.add(f"{path}.subset", f"subset name is invalid: {d.subset}")
    if d.port is not None:
        errs.add(f"{path}.port.number", port_error(d.port.number))


def _weights(
    errs: Errors, path: str, routes: Sequence[HTTPRouteDestination | RouteDestination]
) -> None:
    total = 0
    for i, r in enumerate(routes):
        _destination(errs, f"{path}[{i}].destination", r.destination)
        weight = r.weight or 0
        if weight < 0:
            errs.add(f"{path}[{i}].weight", f"weight must not be negative: weight {weight} < 0")
        total += weight
    if len(routes) > 1 and total == 0:
        errs.add(path, "total destination weight = 0")


def _http_destinations(errs: Errors, path: str, routes: Sequence[HTTPRouteDestination]) -> None:
    _weights(errs, path, routes)
    for i, r in enumerate(routes):
        _headers(errs, f"{path}[{i}].headers", r.headers)


# --- TLS and TCP -----------------------------------------------------------------------------


def _l4_common(
    errs: Errors,
    path: str,
    subnets: Sequence[str],
    port: int | None,
    labels: Mapping[str, str],
    gateways: Sequence[str],
) -> None:
    for i, subnet in enumerate(subnets):
        errs.add(f"{path}.destinationSubnets[{i}]", subnet_error(subnet))
    if port:
        errs.add(f"{path}.port", port_error(port))
    check_labels(errs, f"{path}.sourceLabels", labels)
    check_gateway_names(errs, f"{path}.gateways", gateways)


def _tls_route(errs: Errors, path: str, tls: TLSRoute, vs: VirtualService) -> None:
    if not tls.match:
        errs.add(f"{path}.match", "TLS route must have at least one match condition")
    to_gateway = bool(vs.spec.gateways) and MESH_GATEWAY not in vs.spec.gateways
    for j, m in enumerate(tls.match):
        mpath = f"{path}.match[{j}]"
        if not m.sniHosts:
            errs.add(f"{mpath}.sniHosts", "TLS match must have at least one SNI host")
        for k, sni in enumerate(m.sniHosts):
            spath = f"{mpath}.sniHosts[{k}]"
            err = wildcard_domain_error(sni)
            if err:
                if is_ip(sni):
                    errs.warn(
                        spath,
                        f'using an IP address ("{sni}") goes against SNI spec and most '
                        "clients do not support this",
                    )
                elif not (to_gateway and sni.startswith("outbound_.")):
                    errs.add(spath, err)
                continue
            if not any(host_subset_of(sni, h) for h in vs.spec.hosts):
                errs.add(
                    spath,
                    f'SNI host "{sni}" is not a compatible subset of any of the virtual '
                    f"service hosts: [{', '.join(vs.spec.hosts)}]",
                )
        _l4_common(errs, mpath, m.destinationSubnets, m.port, m.sourceLabels, m.gateways)
    if not tls.route:
        errs.add(f"{path}.route", "TLS route is required")
    _weights(errs, f"{path}.route", tls.route)


#: L4 match fields a gateway does not look at (Istio's l4MultiMatch: port and gateways).
_SOURCE_FIELDS = ("destinationSubnets", "sourceLabels", "sourceNamespace", "sourceSubnet")


def _unenforced_at_gateways(
    errs: Errors, path: str, match: TLSMatchAttributes | L4MatchAttributes
) -> None:
    for field in _SOURCE_FIELDS:
        if getattr(match, field, None):
            errs.warn(
                f"{path}.{field}",
                "not enforced at gateways (as in Istio, a gateway matches tcp and tls rules "
                "by port, gateway and SNI only)",
            )


def _tcp_at_gateways(errs: Errors, path: str, tcp: TCPRoute, gateways: Sequence[str]) -> None:
    for j, m in enumerate(tcp.match):
        bound = m.gateways or gateways
        if bound and MESH_GATEWAY not in bound:
            _unenforced_at_gateways(errs, f"{path}.match[{j}]", m)


def _tls_at_gateways(errs: Errors, path: str, tls: TLSRoute, gateways: Sequence[str]) -> None:
    for j, m in enumerate(tls.match):
        bound = m.gateways or gateways
        if bound and MESH_GATEWAY not in bound:
            _unenforced_at_gateways(errs, f"{path}.match[{j}]", m)


def _tcp_route(errs: Errors, path: str, tcp: TCPRoute) -> None:
    for j, m in enumerate(tcp.match):
        mpath = f"{path}.match[{j}]"
        _l4_common(errs, mpath, m.destinationSubnets, m.port, m.sourceLabels, m.gateways)
        if m.sourceSubnet:
            errs.add(f"{mpath}.sourceSubnet", subnet_error(m.sourceSubnet))
    if not tcp.route:
        errs.add(f"{path}.route", "TCP route is required")
    _weights(errs, f"{path}.route", tcp.route)


# What other kinds that carry VirtualService route fields (Flagger's Canary) check with.
http_match = _match
http_headers = _headers
http_retries = _retries
http_cors = _cors
