"""Router (gateway) proxies: listeners from Gateway servers, VirtualServices bound to them."""

from __future__ import annotations

from envoy.config.route.v3 import route_components_pb2 as rc

from pilotfish.translate import CLUSTER_TYPE, LISTENER_TYPE, ROUTE_TYPE, generate
from tests.unit.translate.fixtures import (
    FEATURES,
    GATEWAYS,
    bookinfo_push,
    listener,
    route_config,
    router_node,
    unpack_hcm,
    vhost,
)


def _res(**kw):  # type: ignore[no-untyped-def]
    return generate(router_node(**kw), bookinfo_push(FEATURES + GATEWAYS))


def test_bookinfo_gateway_listener_and_routes() -> None:
    res = generate(router_node(bind_address="127.0.0.1"), bookinfo_push())
    lst = listener(res, "0.0.0.0_8080")
    assert (lst.address.socket_address.address, lst.address.socket_address.port_value) == (
        "127.0.0.1",
        8080,
    )
    hcm = unpack_hcm(lst.filter_chains[0])
    assert hcm.rds.route_config_name == "http.8080" and hcm.use_remote_address.value
    star = vhost(route_config(res, "http.8080"), "*:8080")
    assert list(star.domains) == ["*"]
    assert [r.match.path or r.match.prefix for r in star.routes] == [
        "/productpage",
        "/static",
        "/login",
        "/logout",
        "/api/v1/products",
    ]
    assert star.routes[0].route.cluster == "outbound|9080||productpage.default.svc.cluster.local"
    assert "outbound|9080||productpage.default.svc.cluster.local" in res[CLUSTER_TYPE]


def test_gateway_ports_map_server_ports() -> None:
    res = _res(gateway_ports={80: 8080})
    assert set(res[LISTENER_TYPE]) == {"0.0.0.0_8080", "0.0.0.0_8081"}  # no 443 until TLS
    assert set(res[ROUTE_TYPE]) == {"http.8080", "http.8081"}


def test_wildcard_and_exact_host_matching() -> None:
    rc8080 = route_config(_res(gateway_ports={80: 8080}), "http.8080")
    names = [v.name for v in rc8080.virtual_hosts]
    # Server hosts *.example.com, exact.test, default/ns.test; "unrelated.test" is not served.
    assert {"shop.example.com:80", "*.example.com:80", "exact.test:80", "ns.test:80"} <= set(names)
    assert not any(n.startswith("unrelated.test") for n in names)
    wild = vhost(rc8080, "*.example.com:80")
    assert list(wild.domains) == ["*.example.com", "*.example.com:80"]
    assert wild.routes[0].route.cluster == "outbound|9080|v1|reviews.default.svc.cluster.local"
    shop = vhost(rc8080, "shop.example.com:80")
    assert list(shop.domains) == ["shop.example.com", "shop.example.com:*"]
    # /cart is for the gateway; /mesh-only is not.
    assert [r.match.prefix for r in shop.routes] == ["/cart", "/"]
    assert shop.routes[0].route.cluster == "outbound|9080||details.default.svc.cluster.local"


def test_star_server_takes_every_bound_host_and_https_redirect() -> None:
    rc8081 = route_config(_res(gateway_ports={80: 8080}), "http.8081")
    names = {v.name for v in rc8081.virtual_hosts}
    assert "unrelated.test:8081" in names and "*.example.com:8081" in names
    assert all(v.require_tls == rc.VirtualHost.ALL for v in rc8081.virtual_hosts)


def test_selector_must_match_router_labels() -> None:
    res = _res(labels={"istio": "egressgateway"})
    assert res[LISTENER_TYPE] == {} and res[ROUTE_TYPE] == {}


def test_gateway_in_other_namespace_by_ns_name_reference() -> None:
    from tests.unit.translate.fixtures import from_yaml

    docs = from_yaml(
        """
kind: Gateway
metadata: {name: edge, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 9000, name: http, protocol: HTTP}, hosts: ["*/app.test"]}]
---
kind: VirtualService
metadata: {name: app, namespace: default}
spec:
  hosts: [app.test]
  gateways: [istio-system/edge]
  http: [{route: [{destination: {host: ratings}}]}]
---
kind: VirtualService
metadata: {name: not-bound, namespace: default}
spec:
  hosts: [app.test]
  gateways: [edge]
  http: [{route: [{destination: {host: details}}]}]
"""
    )
    res = generate(router_node(), bookinfo_push(docs))
    app = vhost(route_config(res, "http.9000"), "app.test:9000")
    assert [r.route.cluster for r in app.routes] == [
        "outbound|9080||ratings.default.svc.cluster.local"
    ]


def test_no_virtual_service_gives_a_blackhole_host() -> None:
    from tests.unit.translate.fixtures import from_yaml

    docs = from_yaml(
        """
kind: Gateway
metadata: {name: lonely, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 9100, name: http, protocol: HTTP}, hosts: ["*"]}]
"""
    )
    rc9100 = route_config(generate(router_node(), bookinfo_push(docs)), "http.9100")
    assert [v.name for v in rc9100.virtual_hosts] == ["blackhole:9100"]


def test_jwt_claim_match_reads_the_verified_payload_not_a_header() -> None:
    from pilotfish.translate import ROUTE_TYPE, generate
    from tests.unit.translate.fixtures import BOOKINFO_CORE, from_yaml, push_for, router_node

    docs = from_yaml("""
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: claims}
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
  - match:
    - headers: {"@request.auth.claims.nested.key1": {exact: value1}}
      withoutHeaders: {"@request.auth.claims[groups]": {exact: blocked}}
    route: [{destination: {host: reviews}}]
""")
    res = generate(router_node(gateway_ports={80: 8080}), push_for(BOOKINFO_CORE + docs))
    route = res[ROUTE_TYPE]["http.8080"].virtual_hosts[0].routes[0]
    assert not route.match.headers
    nested, groups = route.match.dynamic_metadata
    assert nested.filter == "envoy.filters.http.jwt_authn"
    assert [p.key for p in nested.path] == ["payload", "nested", "key1"]
    exact = [m.string_match.exact or m.list_match.one_of.string_match.exact
             for m in nested.value.or_match.value_matchers]  # fmt: skip
    assert exact == ["value1", "value1"] and not nested.invert
    assert [p.key for p in groups.path] == ["payload", "groups"] and groups.invert
