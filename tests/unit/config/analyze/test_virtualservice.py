"""VirtualService analyzers: destinations, gateway references, gateway hosts, mesh conflicts."""

from __future__ import annotations

from pilotfish.config.analyze.virtualservice import (
    analyze_conflicting_mesh_hosts,
    analyze_destinations,
    analyze_gateway_hosts,
    analyze_gateway_references,
)
from tests.unit.config.analyze._util import SERVICES, codes, run, texts


def vs(route: str, *, name: str = "reviews", extra: str = "") -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: default}}
spec:
  hosts: [reviews]
{extra}
  http:
  - route:
    - destination: {route}
"""


# --- destinations ---------------------------------------------------------------------------


def test_known_host_and_subset_are_clean() -> None:
    assert run(analyze_destinations, SERVICES, vs("{host: reviews, subset: v1}")) == []


def test_missing_subset_is_ist0101_with_the_subset_field() -> None:
    msgs = run(analyze_destinations, SERVICES, vs("{host: reviews, subset: v4}"))
    assert codes(msgs) == ["IST0101"]
    assert msgs[0].text == 'Referenced host+subset in destinationrule not found: "reviews+v4"'
    assert msgs[0].path == "spec.http[0].route[0].destination.subset"
    assert str(msgs[0].resource) == "VirtualService default/reviews"


def test_subset_of_a_rule_written_with_the_fqdn_counts() -> None:
    dr = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings, namespace: other}
spec:
  host: ratings.default.svc.cluster.local
  subsets: [{name: v9, labels: {version: v9}}]
"""
    destination = "{host: ratings, subset: v9}"
    assert run(analyze_destinations, SERVICES, dr, vs(destination)) == []


def test_unknown_host_is_ist0101_host() -> None:
    msgs = run(analyze_destinations, SERVICES, vs("{host: nowhere}"))
    assert texts(msgs) == ['Referenced host not found: "nowhere"']
    assert msgs[0].path.endswith("destination.host")


def test_service_entry_host_is_known_and_wildcards_cover_hosts() -> None:
    se = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext, namespace: default}
spec:
  hosts: ["*.example.com"]
  ports: [{number: 443, name: https, protocol: HTTPS}]
  resolution: DNS
"""
    assert run(analyze_destinations, se, vs("{host: api.example.com}")) == []
    assert codes(run(analyze_destinations, se, vs("{host: api.example.org}"))) == ["IST0101"]


def test_service_entry_exported_to_its_namespace_only_is_not_visible_elsewhere() -> None:
    se = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext, namespace: team-a}
spec:
  hosts: [api.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  exportTo: ["."]
"""
    assert codes(run(analyze_destinations, se, vs("{host: api.example.com}"))) == ["IST0101"]


def test_mirror_host_is_checked() -> None:
    text = vs("{host: reviews}", extra="") + "    mirror: {host: shadow}\n"
    msgs = run(analyze_destinations, SERVICES, text)
    assert texts(msgs) == ['Referenced mirror host not found: "shadow"']


def test_destination_port_must_be_a_service_port() -> None:
    msgs = run(analyze_destinations, SERVICES, vs("{host: reviews, port: {number: 9999}}"))
    assert texts(msgs) == ['Referenced host:port not found: "reviews:9999"']
    assert run(analyze_destinations, SERVICES, vs("{host: reviews, port: {number: 9080}}")) == []


def test_multi_port_service_needs_a_port_ist0112() -> None:
    svc = """
apiVersion: v1
kind: Service
metadata: {name: multi, namespace: default}
spec:
  ports: [{name: http, port: 80}, {name: grpc, port: 9090}]
"""
    msgs = run(analyze_destinations, svc, vs("{host: multi}"))
    assert codes(msgs) == ["IST0112"]
    assert "[80 9090]" in msgs[0].text
    assert run(analyze_destinations, svc, vs("{host: multi, port: {number: 80}}")) == []


def test_tcp_route_destinations_are_checked() -> None:
    text = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: db, namespace: default}
spec:
  hosts: [db]
  tcp:
  - route:
    - destination: {host: db}
"""
    msgs = run(analyze_destinations, text)
    assert [m.path for m in msgs] == ["spec.tcp[0].route[0].destination.host"]


# --- gateway references and hosts -----------------------------------------------------------

GATEWAY = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: web, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["shop.example.com"]
"""


def gw_vs(gateways: str, hosts: str = "[shop.example.com]") -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: shop, namespace: default}}
spec:
  hosts: {hosts}
  gateways: {gateways}
  http:
  - route:
    - destination: {{host: reviews}}
"""


def test_missing_gateway_is_ist0101_gateway() -> None:
    msgs = run(analyze_gateway_references, GATEWAY, gw_vs("[web-bogus]"))
    assert texts(msgs) == ['Referenced gateway not found: "web-bogus"']
    assert msgs[0].path == "spec.gateways[0]"


def test_existing_gateways_in_any_spelling_and_mesh_are_clean() -> None:
    spellings = "[web, default/web, web.default.svc.cluster.local, mesh]"
    assert run(analyze_gateway_references, GATEWAY, gw_vs(spellings)) == []


def test_gateway_in_another_namespace_needs_the_namespace() -> None:
    assert codes(run(analyze_gateway_references, GATEWAY, gw_vs("[istio-system/web]"))) == [
        "IST0101"
    ]


def test_vs_host_not_served_by_the_gateway_is_ist0132() -> None:
    # as istioctl: reported when no host is served, with every host of the VirtualService
    assert run(analyze_gateway_hosts, GATEWAY, gw_vs("[web]", "[shop.example.com, o.com]")) == []
    msgs = run(analyze_gateway_hosts, GATEWAY, gw_vs("[web]", "[a.com, other.com]"))
    assert codes(msgs) == ["IST0132"]
    assert msgs[0].text == (
        "one or more host [a.com other.com] defined in VirtualService default/shop not found in "
        "Gateway default/web."
    )


def test_missing_gateway_is_ist0132_too() -> None:
    msgs = run(analyze_gateway_hosts, GATEWAY, gw_vs("[nowhere]"))
    assert codes(msgs) == ["IST0132"]
    assert "not found in Gateway default/nowhere." in msgs[0].text


def test_vs_hosts_served_by_the_gateway_are_clean() -> None:
    assert run(analyze_gateway_hosts, GATEWAY, gw_vs("[web]")) == []
    star = GATEWAY.replace('"shop.example.com"', '"*"')
    assert run(analyze_gateway_hosts, star, gw_vs("[web]", '["*"]')) == []


def test_gateway_server_host_for_another_namespace_does_not_serve() -> None:
    scoped = GATEWAY.replace('"shop.example.com"', '"prod/shop.example.com"')
    assert codes(run(analyze_gateway_hosts, scoped, gw_vs("[web]"))) == ["IST0132"]
    dot = GATEWAY.replace('"shop.example.com"', '"./shop.example.com"')
    assert run(analyze_gateway_hosts, dot, gw_vs("[web]")) == []


# --- mesh host conflicts --------------------------------------------------------------------


def test_two_mesh_virtual_services_for_one_host_conflict_ist0109() -> None:
    a = vs("{host: reviews}", name="a")
    b = vs("{host: reviews}", name="b")
    msgs = run(analyze_conflicting_mesh_hosts, a, b)
    assert codes(msgs) == ["IST0109", "IST0109"]
    assert {str(m.resource) for m in msgs} == {
        "VirtualService default/a",
        "VirtualService default/b",
    }
    assert "default/a,default/b" in msgs[0].text
    assert "reviews.default.svc.cluster.local" in msgs[0].text


def test_one_mesh_vs_and_one_gateway_vs_do_not_conflict() -> None:
    a = vs("{host: reviews}", name="a")
    b = vs("{host: reviews}", name="b", extra="  gateways: [web]")
    assert run(analyze_conflicting_mesh_hosts, a, b) == []


def test_virtual_services_exported_to_different_namespaces_do_not_conflict() -> None:
    a = vs("{host: reviews}", name="a", extra='  exportTo: ["."]')
    b = vs("{host: reviews}", name="b", extra="  exportTo: [other]")
    assert run(analyze_conflicting_mesh_hosts, a, b) == []
