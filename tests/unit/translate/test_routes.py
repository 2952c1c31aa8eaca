"""VirtualService HTTP rules -> Envoy routes, checked on the produced protos."""

from __future__ import annotations

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.type.v3 import percent_pb2

from pilotfish.translate import generate
from tests.unit.translate.fixtures import (
    FEATURES,
    bookinfo_push,
    from_yaml,
    route_config,
    sidecar_node,
    vhost,
)

RATINGS = "ratings.default.svc.cluster.local:9080"
REVIEWS_V2 = sidecar_node(app="reviews", ip="10.1.0.13", labels={"app": "reviews", "version": "v2"})


def _routes(node=REVIEWS_V2, extra=FEATURES, host=RATINGS) -> list[rc.Route]:  # type: ignore[no-untyped-def]
    res = generate(node, bookinfo_push(extra))
    return list(vhost(route_config(res, "9080"), host).routes)


def test_default_route_without_virtual_service() -> None:
    (route,) = _routes(extra=[], host="details.default.svc.cluster.local:9080")
    assert route.name == "default"
    assert route.match.prefix == "/"
    assert route.route.cluster == "outbound|9080||details.default.svc.cluster.local"
    assert route.route.timeout.seconds == 0 and route.route.timeout.nanos == 0
    retry = route.route.retry_policy
    assert retry.num_retries.value == 2
    assert (
        retry.retry_on
        == "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
    )
    assert list(retry.retriable_status_codes) == [503]
    assert retry.host_selection_retry_max_attempts == 5
    assert [p.name for p in retry.retry_host_predicate] == [
        "envoy.retry_host_predicates.previous_hosts"
    ]


def test_bookinfo_reviews_header_match_then_weights_in_order() -> None:
    first, second = _routes(extra=[], host="reviews.default.svc.cluster.local:9080")
    (h,) = first.match.headers
    assert (h.name, h.string_match.exact) == ("end-user", "jason")
    assert first.route.cluster == "outbound|9080|v2|reviews.default.svc.cluster.local"
    assert second.match.prefix == "/" and not second.match.headers
    weights = [(c.name, c.weight.value) for c in second.route.weighted_clusters.clusters]
    assert weights == [
        ("outbound|9080|v1|reviews.default.svc.cluster.local", 90),
        ("outbound|9080|v3|reviews.default.svc.cluster.local", 10),
    ]


def test_every_match_type() -> None:
    route = _routes()[0]
    assert route.name == "by-everything.m1"
    m = route.match
    assert m.safe_regex.regex == "^/ratings/[0-9]+$"
    assert m.case_sensitive.value is False
    headers = {h.name: h for h in m.headers}
    assert headers["x-exact"].string_match.exact == "a"
    assert headers["x-prefix"].string_match.prefix == "b"
    assert headers["x-regex"].string_match.safe_regex.regex == "c+"
    assert headers["x-present"].present_match
    assert headers["x-debug"].invert_match and headers["x-debug"].string_match.exact == "1"
    assert headers[":method"].string_match.exact == "GET"
    assert headers[":authority"].string_match.prefix == "ratings"
    (qp,) = m.query_parameters
    assert (qp.name, qp.string_match.exact) == ("q", "v")


def test_source_labels_and_port_matches_apply_only_where_they_should() -> None:
    from_v2 = [r.match.prefix for r in _routes()]
    assert "/src" in from_v2  # reviews v2 matches sourceLabels
    assert "/other-port" not in from_v2  # port 9999 is not this route config's port
    from_productpage = [r.match.prefix for r in _routes(node=sidecar_node())]
    assert "/src" not in from_productpage


def test_weights_subsets_and_destination_headers() -> None:
    action = _routes()[0].route
    got = [(c.name, c.weight.value) for c in action.weighted_clusters.clusters]
    assert got == [
        ("outbound|9080|v1|ratings.default.svc.cluster.local", 50),
        ("outbound|9080|v2|ratings.default.svc.cluster.local", 25),
        ("outbound|9080||ratings.default.svc.cluster.local", 25),
    ]
    first = action.weighted_clusters.clusters[0]
    assert first.request_headers_to_add[0].header.key == "x-dest"


def test_timeout_and_retries() -> None:
    routes = _routes()
    action = routes[0].route
    assert (action.timeout.seconds, action.timeout.nanos) == (2, 500_000_000)
    retry = action.retry_policy
    assert retry.num_retries.value == 3
    assert retry.per_try_timeout.seconds == 1
    assert retry.retry_on == "5xx,gateway-error,retriable-status-codes"
    assert list(retry.retriable_status_codes) == [503]
    rewrite = next(r for r in routes if r.match.prefix == "/rewrite")
    assert not rewrite.route.HasField("retry_policy")  # attempts: 0 disables retries


def test_fault_injection_per_route() -> None:
    fault = fault_pb2.HTTPFault()
    assert _routes()[0].typed_per_filter_config["envoy.filters.http.fault"].Unpack(fault)
    assert fault.delay.fixed_delay.seconds == 7
    assert fault.delay.percentage.numerator == 125_000
    assert fault.delay.percentage.denominator == percent_pb2.FractionalPercent.MILLION
    assert fault.abort.http_status == 500 and fault.abort.percentage.numerator == 100_000


def test_mirror_cors_and_headers() -> None:
    route = _routes()[0]
    (mirror,) = route.route.request_mirror_policies
    assert mirror.cluster == "outbound|9080|v2|ratings.default.svc.cluster.local"
    assert mirror.runtime_fraction.default_value.numerator == 200_000
    cors = cors_pb2.CorsPolicy()
    assert route.typed_per_filter_config["envoy.filters.http.cors"].Unpack(cors)
    assert cors.allow_origin_string_match[0].exact == "https://example.com"
    assert cors.allow_origin_string_match[1].safe_regex.regex == ".*\\.example\\.org"
    assert (cors.allow_methods, cors.allow_headers, cors.expose_headers) == (
        "GET,POST",
        "x-a",
        "x-b",
    )
    assert cors.max_age == "86400" and cors.allow_credentials.value
    added = {h.header.key: (h.header.value, h.append_action) for h in route.request_headers_to_add}
    A = type(route.request_headers_to_add[0]).HeaderAppendAction
    assert added == {
        "x-set": ("1", A.OVERWRITE_IF_EXISTS_OR_ADD),
        "x-add": ("2", A.APPEND_IF_EXISTS_OR_ADD),
    }
    assert list(route.request_headers_to_remove) == ["x-rm"]
    assert route.response_headers_to_add[0].header.key == "x-resp"
    assert list(route.response_headers_to_remove) == ["server"]


def test_redirect_direct_response_and_rewrite() -> None:
    by_path = {r.match.path or r.match.prefix: r for r in _routes()}
    red = by_path["/redirect"].redirect
    assert (red.path_redirect, red.host_redirect) == ("/new", "new.example.com")
    assert red.response_code == rc.RedirectAction.FOUND
    direct = by_path["/direct"].direct_response
    assert direct.status == 418 and direct.body.inline_string == "teapot"
    rw = by_path["/rewrite"].route
    assert rw.prefix_rewrite == "/v2" and rw.host_rewrite_literal == "ratings.internal"
    assert rw.cluster == "outbound|9080||ratings.default.svc.cluster.local"


def test_consistent_hash_header_on_routes_without_previous_hosts_retry() -> None:
    last = _routes()[-1]
    assert last.route.cluster == "outbound|9080|v1|ratings.default.svc.cluster.local"
    (h,) = last.route.hash_policy
    assert h.header.header_name == "x-user"
    assert not last.route.retry_policy.retry_host_predicate


def test_consistent_hash_source_ip_on_default_route() -> None:
    (route,) = _routes(host="details.default.svc.cluster.local:9080")
    (h,) = route.route.hash_policy
    assert h.connection_properties.source_ip


def test_match_gateways_split_mesh_and_gateway_rules() -> None:
    docs = from_yaml(
        """
kind: VirtualService
metadata: {name: details, namespace: default}
spec:
  hosts: [details]
  gateways: [gw, mesh]
  http:
  - match: [{uri: {prefix: /gw-only}, gateways: [gw]}]
    route: [{destination: {host: details}}]
  - match: [{uri: {prefix: /mesh-only}, gateways: [mesh]}]
    route: [{destination: {host: details}}]
  - route: [{destination: {host: details}}]
"""
    )
    routes = _routes(node=sidecar_node(), extra=docs, host="details.default.svc.cluster.local:9080")
    assert [r.match.prefix for r in routes] == ["/mesh-only", "/"]


def test_gateway_only_virtual_service_does_not_apply_to_sidecars() -> None:
    docs = from_yaml(
        """
kind: VirtualService
metadata: {name: details, namespace: default}
spec:
  hosts: [details]
  gateways: [gw]
  http: [{route: [{destination: {host: details, subset: v2}}]}]
"""
    )
    (route,) = _routes(
        node=sidecar_node(), extra=docs, host="details.default.svc.cluster.local:9080"
    )
    assert route.name == "default"


def test_empty_messages_count_as_not_written() -> None:
    """``{}`` for a message leaves the route as if the field were absent, except ``retries``,
    where any value (even ``{}``, no attempts) disables retries."""
    extra = from_yaml(
        """
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings]
  http:
  - match: [{uri: {prefix: /a}, method: {}}]
    fault: {}
    corsPolicy: {}
    redirect: {}
    mirror: {host: ratings, subset: v2}
    mirrorPercentage: {}
    route: [{destination: {host: ratings}}]
  - match: [{uri: {prefix: /b}}]
    retries: {}
    route: [{destination: {host: ratings}}]
"""
    )
    a, b = _routes(extra=extra)[:2]
    assert a.match.prefix == "/a" and not a.match.headers  # method: {} is no matcher
    assert not a.HasField("redirect") and a.route.cluster  # redirect: {} is no redirect
    assert not a.typed_per_filter_config  # no fault, no CORS
    (mirror,) = a.route.request_mirror_policies
    assert mirror.runtime_fraction.default_value.numerator == 1_000_000  # 100%
    assert a.route.retry_policy.num_retries.value == 2  # Istio's default policy
    assert b.match.prefix == "/b" and not b.route.HasField("retry_policy")


def _vs_routes(http: str, node=REVIEWS_V2) -> list[rc.Route]:  # type: ignore[no-untyped-def]
    doc = from_yaml(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
        "metadata: {name: ratings}\nspec:\n  hosts: [ratings]\n  http:\n" + http
    )
    return _routes(node=node, extra=doc)


def test_setting_authority_or_host_is_a_host_rewrite_never_a_header() -> None:
    one, split = _vs_routes("""
  - match: [{headers: {x: {exact: "1"}}}]
    route:
    - destination: {host: ratings}
      headers: {request: {set: {Host: dest.example.com, x-a: "1"}}}
    headers: {request: {add: {x-b: "2"}}}
  - route:
    - destination: {host: ratings}
      weight: 50
      headers: {request: {set: {":authority": a.example}}}
    - {destination: {host: ratings}, weight: 50}
    headers: {request: {set: {":authority": route.example.com}}}
""")
    assert one.route.host_rewrite_literal == "dest.example.com"
    names = [h.header.key for h in one.request_headers_to_add]
    assert "x-a" in names and "x-b" in names
    assert not {"host", ":authority", "Host"} & set(names)
    assert split.route.host_rewrite_literal == "route.example.com"
    first = split.route.weighted_clusters.clusters[0]
    assert first.host_rewrite_literal == "a.example"
    assert not any(h.header.key == ":authority" for h in first.request_headers_to_add)


def test_without_headers_also_matches_a_missing_header() -> None:
    (route,) = _vs_routes("""
  - match: [{withoutHeaders: {end-user: {exact: jason}, x-any: {}}}]
    route: [{destination: {host: ratings}}]
""")
    by_name = {h.name: h for h in route.match.headers}
    assert by_name["end-user"].invert_match and by_name["end-user"].treat_missing_header_as_empty
    # "without x-any at all": an inverted presence match, true when it is missing already.
    assert by_name["x-any"].invert_match and by_name["x-any"].present_match
    assert not by_name["x-any"].treat_missing_header_as_empty


def test_pseudo_header_match_is_an_envoy_header_matcher() -> None:
    (route,) = _vs_routes("""
  - match: [{headers: {":method": {exact: POST}, ":path": {prefix: /api}}}]
    route: [{destination: {host: ratings}}]
""")
    assert {
        (h.name, h.string_match.exact or h.string_match.prefix) for h in route.match.headers
    } == {
        (":method", "POST"),
        (":path", "/api"),
    }


def test_stat_prefix_is_the_routes_stat_prefix() -> None:
    named, plain = _vs_routes("""
  - match: [{headers: {x: {exact: "1"}}, statPrefix: ratings-x}]
    route: [{destination: {host: ratings}}]
  - route: [{destination: {host: ratings}}]
""")
    assert named.stat_prefix == "ratings-x" and plain.stat_prefix == ""


def test_redirect_derive_port_as_istio() -> None:
    request_port, protocol_default, port_80, port_8080 = _vs_routes("""
  - match: [{uri: {prefix: /a}}]
    redirect: {uri: /x, derivePort: FROM_REQUEST_PORT}
  - match: [{uri: {prefix: /b}}]
    redirect: {uri: /x, derivePort: FROM_PROTOCOL_DEFAULT}
  - match: [{uri: {prefix: /c}}]
    redirect: {uri: /x, port: 80}
  - match: [{uri: {prefix: /d}}]
    redirect: {uri: /x, scheme: https, port: 8080}
""")
    # The sidecar's routes are built for port 9080: that is the request's port.
    assert request_port.redirect.port_redirect == 9080
    assert protocol_default.redirect.port_redirect == 0
    assert port_80.redirect.port_redirect == 0  # http's own port is left out, as Istio
    assert port_8080.redirect.port_redirect == 8080


def test_cors_unmatched_preflights_forward_or_ignore() -> None:
    routes = _vs_routes("""
  - match: [{uri: {prefix: /a}}]
    corsPolicy: {allowOrigins: [{exact: a.com}], unmatchedPreflights: IGNORE}
    route: [{destination: {host: ratings}}]
  - route: [{destination: {host: ratings}}]
    corsPolicy: {allowOrigins: [{exact: a.com}]}
""")
    forward = []
    for route in routes:
        cors = cors_pb2.CorsPolicy()
        assert route.typed_per_filter_config["envoy.filters.http.cors"].Unpack(cors)
        forward.append(cors.forward_not_matching_preflights.value)
    assert forward == [False, True]
