"""VirtualService rules: each invalid case next to the matching valid one."""

from __future__ import annotations

from typing import Any

import pytest

from ._util import body, has, ok, problems


def vs(http: list[dict[str, Any]] | None = None, **spec: Any) -> dict[str, Any]:
    s: dict[str, Any] = {"hosts": ["reviews"]}
    if http is not None:
        s["http"] = http
    s.update(spec)
    return body("VirtualService", s)


def route(*dests: dict[str, Any], **extra: Any) -> dict[str, Any]:
    r: dict[str, Any] = {"route": list(dests) or [{"destination": {"host": "reviews"}}]}
    r.update(extra)
    return r


def dest(host: str = "reviews", weight: int | None = None, **d: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"destination": {"host": host, **d}}
    if weight is not None:
        out["weight"] = weight
    return out


def test_wildcard_host_bound_to_mesh() -> None:
    msg = "wildcard host * is not allowed for virtual services bound to the mesh gateway"
    has(vs([route()], hosts=["*"]), "spec.hosts[0]", msg)
    has(vs([route()], hosts=["*"], gateways=["gw", "mesh"]), "spec.hosts[0]", msg)
    ok(vs([route()], hosts=["*"], gateways=["bookinfo-gateway"]))


def test_duplicate_hosts() -> None:
    has(vs([route()], hosts=["a.com", "a.com"]), "spec.hosts", "duplicate hosts in virtual service")
    has(vs([route()], hosts=["*.foo.com", "bar.foo.com"]), "spec.hosts", "duplicate hosts")
    ok(vs([route()], hosts=["a.com", "b.com", "*.foo.com"]))


def test_invalid_host() -> None:
    has(vs([route()], hosts=["bad_host"]), "spec.hosts[0]", 'domain name "bad_host" invalid')
    ok(vs([route()], hosts=["10.0.0.1", "reviews.default.svc.cluster.local"]))


def test_http_tcp_or_tls_required() -> None:
    has(vs(), "spec", "http, tcp or tls must be provided in virtual service")
    ok(vs([route()]))


def test_route_with_redirect() -> None:
    r = route(redirect={"uri": "/v2"})
    has(vs([r]), "spec.http[0]", "HTTP route cannot contain both route and redirect")
    ok(vs([{"redirect": {"uri": "/v2"}}]))


def test_fault_and_rewrite_with_redirect_or_direct_response() -> None:
    fault = {"abort": {"httpStatus": 500}}
    has(
        vs([{"redirect": {"uri": "/x"}, "fault": fault}]),
        "spec.http[0]",
        "HTTP route cannot contain both fault and redirect",
    )
    has(
        vs([{"redirect": {"uri": "/x"}, "directResponse": {"status": 200}}]),
        "spec.http[0]",
        "cannot contain both direct_response and redirect",
    )
    has(
        vs([{"directResponse": {"status": 503}, "fault": fault}]),
        "spec.http[0]",
        "HTTP route cannot contain both fault and direct_response",
    )
    has(
        vs([route(directResponse={"status": 503})]),
        "spec.http[0]",
        "HTTP route cannot contain both route and direct_response",
    )
    ok(vs([{"directResponse": {"status": 503, "body": {"string": "down"}}}]))
    ok(vs([route(fault=fault)]))


def test_route_required() -> None:
    has(
        vs([{"timeout": "1s"}]),
        "spec.http[0]",
        "HTTP route, redirect or direct_response is required",
    )


def test_mirror_with_mirrors() -> None:
    r = route(mirror={"host": "shadow"}, mirrors=[{"destination": {"host": "shadow2"}}])
    has(vs([r]), "spec.http[0]", "HTTP route cannot contain both mirror and mirrors")
    ok(vs([route(mirror={"host": "shadow"}, mirrorPercentage={"value": 50})]))
    ok(vs([route(mirrors=[{"destination": {"host": "s"}, "percentage": {"value": 10.5}}])]))


def test_mirror_percentage_range() -> None:
    has(
        vs([route(mirror={"host": "s"}, mirrorPercentage={"value": 101})]),
        "spec.http[0].mirrorPercentage",
        "mirror_percentage must have a max value of 100",
    )
    has(
        vs([route(mirrors=[{"destination": {"host": "s"}, "percentage": {"value": -1}}])]),
        "spec.http[0].mirrors[0].percentage",
        "mirror percentage must have a min value of 0",
    )


def test_total_weight_zero() -> None:
    has(
        vs([route(dest(weight=0), dest(weight=0))]),
        "spec.http[0].route",
        "total destination weight = 0",
    )
    has(vs([route(dest(), dest())]), "spec.http[0].route", "total destination weight = 0")
    ok(vs([route(dest(weight=0))]))


def test_negative_weight() -> None:
    has(
        vs([route(dest(weight=100), dest(weight=-1))]),
        "spec.http[0].route[1].weight",
        "weight must not be negative",
    )


@pytest.mark.parametrize("weights", [(90, 10), (50, 30), (80, 40), (100, 0)])
def test_weights_not_summing_to_100_are_valid(weights: tuple[int, int]) -> None:
    ok(vs([route(dest(weight=weights[0]), dest(weight=weights[1]))]))


def test_fault_abort_status_range() -> None:
    for status in (199, 600, 0):
        has(
            vs([route(fault={"abort": {"httpStatus": status}})]),
            "spec.http[0].fault.abort.httpStatus",
            "is not in range 200-599",
        )
    for status in (200, 503, 599):
        ok(vs([route(fault={"abort": {"httpStatus": status, "percentage": {"value": 1}}})]))


def test_fault_needs_abort_or_delay() -> None:
    has(
        vs([route(fault={})]),
        "spec.http[0].fault",
        "HTTP fault injection must have an abort and/or a delay",
    )
    ok(vs([route(fault={"delay": {"fixedDelay": "7s"}})]))


def test_fault_grpc_status() -> None:
    has(
        vs([route(fault={"abort": {"grpcStatus": "NOPE"}})]),
        "spec.http[0].fault.abort.grpcStatus",
        "is not supported",
    )
    ok(vs([route(fault={"abort": {"grpcStatus": "UNAVAILABLE"}})]))


@pytest.mark.parametrize("value", [-1, 100.5, 0.00001])
def test_percentages_out_of_range(value: float) -> None:
    has(
        vs([route(fault={"delay": {"fixedDelay": "1s", "percentage": {"value": value}}})]),
        "spec.http[0].fault.delay.percentage",
        "is neither 0.0, nor in range [0.0001, 100.0]",
    )


def test_percentages_in_range() -> None:
    for value in (0, 0.1, 50, 100):
        ok(vs([route(fault={"delay": {"fixedDelay": "1s", "percentage": {"value": value}}})]))


def test_retries_with_zero_attempts() -> None:
    msg = "http retry policy configured when attempts are set to 0 (disabled)"
    has(vs([route(retries={"attempts": 0, "perTryTimeout": "1s"})]), "spec.http[0].retries", msg)
    has(vs([route(retries={"retryOn": "5xx"})]), "spec.http[0].retries", msg)
    ok(vs([route(retries={"attempts": 0})]))
    ok(vs([route(retries={"attempts": 3, "perTryTimeout": "2s", "retryOn": "5xx"})]))


def test_negative_attempts() -> None:
    has(
        vs([route(retries={"attempts": -1})]),
        "spec.http[0].retries.attempts",
        "attempts cannot be negative",
    )


def test_retry_on_policies() -> None:
    has(
        vs([route(retries={"attempts": 2, "retryOn": "5xx,sometimes"})]),
        "spec.http[0].retries.retryOn",
        '"sometimes" is not a valid retryOn policy',
    )
    has(
        vs([route(retries={"attempts": 2, "retryOn": "599"})]),
        "spec.http[0].retries.retryOn",
        '"599" is not a valid retryOn policy',
    )
    policies = (
        "5xx,gateway-error,reset,connect-failure,envoy-ratelimited,retriable-4xx,refused-stream,"
        "retriable-status-codes,retriable-headers,cancelled,deadline-exceeded,internal,"
        "resource-exhausted,unavailable,reset-before-request,http3-post-connect-failure,503"
    )
    ok(vs([route(retries={"attempts": 2, "retryOn": policies})]))


@pytest.mark.parametrize(
    "regex",
    ["(a", "(a)\\1", "foo(?=bar)", "(?<!x)y", "(?P<n>a)(?P=n)", "[z-a]"],
)
def test_invalid_regex(regex: str) -> None:
    has(
        vs([route(match=[{"uri": {"regex": regex}}])]),
        "spec.http[0].match[0].uri.regex",
        "Istio uses RE2 style regex-based match",
    )


def test_valid_regex_and_header_regex() -> None:
    ok(vs([route(match=[{"uri": {"regex": "^/api/v[0-9]+/(users|items)$"}}])]))
    ok(vs([route(match=[{"headers": {"cookie": {"regex": "^(.*?;)?(user=jason)(;.*)?$"}}}])]))
    has(
        vs([route(match=[{"headers": {"cookie": {"regex": "(?=x)"}}}])]),
        "spec.http[0].match[0].headers[cookie].regex",
        "lookahead",
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("timeout", "10"),
        ("timeout", "ten"),
        ("timeout", "0.0001s"),
        ("retries.perTryTimeout", "1x"),
        ("fault.delay.fixedDelay", "-5s"),
    ],
)
def test_invalid_durations(field: str, value: str) -> None:
    r = route()
    if field == "timeout":
        r["timeout"] = value
    elif field == "retries.perTryTimeout":
        r["retries"] = {"attempts": 1, "perTryTimeout": value}
    else:
        r["fault"] = {"delay": {"fixedDelay": value}}
    has(vs([r]), f"spec.http[0].{field}", "")
    assert problems(vs([r]))


def test_valid_durations() -> None:
    ok(vs([route(timeout="0.5s", retries={"attempts": 1, "perTryTimeout": "100ms"})]))
    ok(vs([route(timeout="0s")]))  # Istio documents 0s as "no timeout"
    ok(vs([route(timeout="1m")]))


def test_jwt_claim_header_match_needs_gateway() -> None:
    m = [{"headers": {"@request.auth.claims.groups": {"exact": "admin"}}}]
    has(
        vs([route(match=m)]),
        "spec.http[0].match[0].headers[@request.auth.claims.groups]",
        "JWT claim based routing (key: @request.auth.claims.groups) is only supported for gateway",
    )
    ok(vs([route(match=m)], hosts=["app.example.com"], gateways=["istio-system/ingress"]))


def test_destination_host_required_and_port_range() -> None:
    has(
        vs([route(dest(host=""))]),
        "spec.http[0].route[0].destination.host",
        "destination host is required",
    )
    has(
        vs([route(dest(host="*"))]),
        "spec.http[0].route[0].destination.host",
        "invalid destination host *",
    )
    has(
        vs([route(dest(port={"number": 70000}))]),
        "spec.http[0].route[0].destination.port.number",
        "port number 70000 must be in the range 1..65535",
    )
    ok(vs([route(dest(port={"number": 9080}, subset="v1"))]))


def test_redirect_rules() -> None:
    has(
        vs([{"redirect": {}}]),
        "spec.http[0].redirect",
        "redirect must specify URI, authority, scheme, or port",
    )
    has(
        vs([{"redirect": {"uri": "/", "redirectCode": 200}}]),
        "spec.http[0].redirect.redirectCode",
        "must be 3xx",
    )
    ok(vs([{"redirect": {"scheme": "https", "redirectCode": 308, "port": 443}}]))


def test_delegate_virtual_service() -> None:
    b = body("VirtualService", {"http": [route()]})
    ok(b)
    b["spec"]["gateways"] = ["gw"]
    has(b, "spec.gateways", "delegate virtual service must have no gateways specified")


def test_root_rule_names_its_delegate() -> None:
    ok(vs([{"match": [{"uri": {"prefix": "/a"}}], "delegate": {"name": "d", "namespace": "t"}}]))
    has(vs([{"delegate": {"namespace": "t"}}]), "spec.http[0].delegate.name", "name is required")
    has(
        vs([{"delegate": {"name": "d", "namespace": "T_x"}}]),
        "spec.http[0].delegate.namespace",
        "invalid delegate namespace",
    )
    has(
        vs([{"delegate": {"name": "d"}, "route": [dest()]}]),
        "spec.http[0]",
        "root HTTP route must not specify route",
    )


def test_tcp_and_tls_routes() -> None:
    tcp = {"match": [{"port": 3306}], "route": [dest(host="mysql")]}
    ok(vs(tcp=[tcp], hosts=["mysql"]))
    has(
        vs(tcp=[{"match": [{"port": 3306}]}], hosts=["mysql"]),
        "spec.tcp[0].route",
        "TCP route is required",
    )
    tls = {"match": [{"sniHosts": ["a.example.com"]}], "route": [dest(host="a.example.com")]}
    ok(vs(tls=[tls], hosts=["*.example.com"], gateways=["gw"]))
    bad = {"match": [{"sniHosts": ["b.other.com"]}], "route": [dest(host="b")]}
    has(
        vs(tls=[bad], hosts=["*.example.com"], gateways=["gw"]),
        "spec.tls[0].match[0].sniHosts[0]",
        "is not a compatible subset of any of the virtual service hosts",
    )


def test_header_operations() -> None:
    bad = {"request": {"set": {":path": "/x"}}, "response": {"remove": ["Host"]}}
    found = dict(problems(vs([route(headers=bad)])))
    assert 'header cannot have ":" prefix' in found["spec.http[0].headers.request.set[:path]"]
    assert "cannot set Host header" in found["spec.http[0].headers.response.remove[0]"]
    ok(vs([route(headers={"request": {"set": {"x-a": "1"}}, "response": {"add": {"x-b": "2"}}})]))


def test_cors_policy() -> None:
    has(
        vs([route(corsPolicy={"allowMethods": ["FETCH"]})]),
        "spec.http[0].corsPolicy.allowMethods[0]",
        '"FETCH" is not a supported HTTP method',
    )
    ok(
        vs(
            [
                route(
                    corsPolicy={
                        "allowOrigins": [
                            {"exact": "https://example.com"},
                            {"regex": ".*\\.example\\.com"},
                        ],
                        "allowMethods": ["GET", "POST"],
                        "allowHeaders": ["x-a", "*"],
                        "maxAge": "24h",
                        "allowCredentials": True,
                    }
                )
            ]
        )
    )


def test_export_to() -> None:
    has(vs([route()], exportTo=["*", "."]), "spec.exportTo", "cannot have both public (*)")
    ok(vs([route()], exportTo=["."]))


def test_pseudo_header_matches_are_accepted_other_colon_names_are_not() -> None:
    for name in (":method", ":authority", ":path", ":scheme"):
        ok(vs([route(match=[{"headers": {name: {"exact": "x"}}}])]))
        ok(vs([route(match=[{"withoutHeaders": {name: {"exact": "x"}}}])]))
    has(vs([route(match=[{"headers": {":status": {"exact": "x"}}}])]),
        "spec.http[0].match[0].headers[:status]", "not a valid header name")  # fmt: skip


def test_jwt_claim_keys_need_a_claim_path() -> None:
    gw = {"gateways": ["gw"]}
    ok(vs([route(match=[{"headers": {"@request.auth.claims.nested.key1": {"exact": "v"}}}])], **gw))
    ok(vs([route(match=[{"headers": {"@request.auth.claims[a][b]": {"exact": "v"}}}])], **gw))
    bad = "@request.auth.claims."
    has(vs([route(match=[{"headers": {bad: {"exact": "v"}}}])], **gw),
        f"spec.http[0].match[0].headers[{bad}]", "invalid JWT claim key")  # fmt: skip


def test_authority_set_in_request_headers_is_accepted() -> None:
    ok(vs([route(headers={"request": {"set": {":authority": "a.example.com"}}})]))
    host = {"request": {"set": {"Host": "b.example.com"}}}
    ok(vs([route({"destination": {"host": "reviews"}, "headers": host})]))


def _warnings(b: dict[str, Any]) -> list[tuple[str, str]]:
    return [(w.path, w.reason) for w in ok(b).warnings]


def test_tls_match_fields_gateways_do_not_match_on_are_warned_about() -> None:
    tls = {
        "match": [{"sniHosts": ["a.example.com"], "sourceNamespace": "x"}],
        "route": [dest(host="a.example.com")],
    }
    found = _warnings(vs(tls=[tls], hosts=["a.example.com"], gateways=["gw"]))
    assert [p for p, _ in found] == ["spec.tls[0].match[0].sourceNamespace"]
    # Sidecars enforce it.
    assert _warnings(vs(tls=[tls], hosts=["a.example.com"])) == []


def test_l4_fields_gateways_do_not_match_on_are_warned_about() -> None:
    tcp = {"match": [{"port": 31400, "sourceLabels": {"app": "x"}}], "route": [dest()]}
    found = _warnings(vs(tcp=[tcp], hosts=["*"], gateways=["gw"]))
    assert [p for p, _ in found] == ["spec.tcp[0].match[0].sourceLabels"]
    # On sidecars the same match is enforced.
    assert _warnings(vs(tcp=[tcp], hosts=["reviews"])) == []


def test_tcp_source_subnet_is_warned_about_at_gateways_only() -> None:
    tcp = {"match": [{"sourceSubnet": "10.0.0.0/8"}], "route": [dest()]}
    assert _warnings(vs(tcp=[tcp], hosts=["reviews"])) == []
    found = _warnings(vs(tcp=[tcp], hosts=["*"], gateways=["gw"]))
    assert [p for p, _ in found] == ["spec.tcp[0].match[0].sourceSubnet"]
