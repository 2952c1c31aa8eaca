"""Model: Istio host rules, PushContext indexes and lookups, Proxy."""

from __future__ import annotations

import pytest

from pilotfish.api.hosts import (
    best_match,
    host_matches,
    normalize_gateway,
    resolve_host,
    split_server_host,
)
from pilotfish.model import Proxy, PushContext
from pilotfish.registry import Registry
from tests.unit.translate.fixtures import (
    BOOKINFO_CORE,
    bookinfo_push,
    from_yaml,
    push_for,
    service,
    sidecar_node,
    stored,
)


def test_short_names_resolve_in_the_rule_namespace() -> None:
    assert resolve_host("reviews", "prod") == "reviews.prod.svc.cluster.local"
    assert resolve_host("reviews.prod", "x") == "reviews.prod"  # Istio does not expand dotted
    assert resolve_host("*.example.com", "x") == "*.example.com"
    assert resolve_host("*", "x") == "*"


@pytest.mark.parametrize(
    ("pattern", "host", "expected"),
    [
        ("*", "anything.at.all", True),
        ("*.example.com", "a.example.com", True),
        ("*.example.com", "a.b.example.com", True),
        ("*.example.com", "example.com", False),
        ("*.example.com", "*.x.example.com", True),
        ("*.x.example.com", "*.example.com", False),
        ("a.example.com", "a.example.com", True),
        ("a.example.com", "b.example.com", False),
    ],
)
def test_wildcards(pattern: str, host: str, expected: bool) -> None:
    assert host_matches(pattern, host) is expected


def test_best_match_prefers_exact_then_longest_wildcard() -> None:
    pats = ["*", "*.example.com", "*.shop.example.com", "a.shop.example.com"]
    assert best_match(pats, "a.shop.example.com") == "a.shop.example.com"
    assert best_match(pats, "b.shop.example.com") == "*.shop.example.com"
    assert best_match(pats, "c.example.com") == "*.example.com"
    assert best_match(pats, "other.org") == "*"


def test_gateway_references() -> None:
    assert normalize_gateway("mesh", "ns") == "mesh"
    assert normalize_gateway("gw", "ns") == "ns/gw"
    assert normalize_gateway("other/gw", "ns") == "other/gw"
    assert split_server_host("./a.com", "gwns") == ("gwns", "a.com")
    assert split_server_host("a.com", "gwns") == ("*", "a.com")
    assert split_server_host("x/a.com", "gwns") == ("x", "a.com")


DR = """
kind: DestinationRule
metadata: {{name: {name}, namespace: {ns}}}
spec:
  host: "{host}"
  exportTo: {export}
  subsets: [{{name: {name}, labels: {{v: "1"}}}}]
"""


def _dr(name: str, ns: str, host: str, export: str = '["*"]') -> dict:
    return from_yaml(DR.format(name=name, ns=ns, host=host, export=export))[0]


def test_destination_rule_lookup_order() -> None:
    push = push_for(
        [
            service("reviews", ns="bookinfo"),
            _dr("root", "istio-system", "*.bookinfo.svc.cluster.local"),
            _dr("svcns", "bookinfo", "reviews"),
            _dr("client", "client", "reviews.bookinfo.svc.cluster.local"),
            _dr("private", "private", "reviews.bookinfo.svc.cluster.local", '["."]'),
        ]
    )
    host = "reviews.bookinfo.svc.cluster.local"
    assert push.destination_rule("client", host).key.name == "client"  # type: ignore[union-attr]
    assert push.destination_rule("elsewhere", host).key.name == "svcns"  # type: ignore[union-attr]
    assert push.destination_rule("bookinfo", host).key.name == "svcns"  # type: ignore[union-attr]
    other = "ratings.bookinfo.svc.cluster.local"
    assert push.destination_rule("elsewhere", other).key.name == "root"  # type: ignore[union-attr]
    assert push.destination_rule("elsewhere", "nothing.example") is None


def test_destination_rule_most_specific_host_wins_in_a_namespace_then_the_oldest() -> None:
    def named(host: str, client: str = "bookinfo") -> str:
        dr = push.destination_rule(client, host)
        return dr.key.name if dr is not None else ""

    push = push_for(
        [
            service("reviews", ns="bookinfo"),
            service("ratings", ns="bookinfo"),
            _dr("any", "bookinfo", "*"),
            _dr("wide", "bookinfo", "*.svc.cluster.local"),
            _dr("narrow", "bookinfo", "*.bookinfo.svc.cluster.local"),
            _dr("exact", "bookinfo", "reviews"),
            _dr("exact-later", "bookinfo", "reviews.bookinfo.svc.cluster.local"),
            _dr("hidden-exact", "bookinfo", "ratings", '["."]'),
        ]
    )
    assert named("reviews.bookinfo.svc.cluster.local") == "exact"
    assert named("ratings.bookinfo.svc.cluster.local") == "hidden-exact"
    # From another namespace the exact rule is not visible: the best visible wildcard wins.
    assert named("ratings.bookinfo.svc.cluster.local", "other") == "narrow"
    assert named("x.other.svc.cluster.local") == "wide"
    assert named("example.org") == "any"


def test_destination_rule_export_to_dot_hides_it_from_other_namespaces() -> None:
    push = push_for(
        [service("reviews", ns="bookinfo"), _dr("hidden", "bookinfo", "reviews", '["."]')]
    )
    host = "reviews.bookinfo.svc.cluster.local"
    assert push.destination_rule("bookinfo", host) is not None
    assert push.destination_rule("other", host) is None


def test_mesh_virtual_service_selection() -> None:
    docs = from_yaml(
        """
kind: VirtualService
metadata: {name: wild, namespace: default}
spec: {hosts: ["*.svc.cluster.local"], http: [{route: [{destination: {host: ratings}}]}]}
---
kind: VirtualService
metadata: {name: exact, namespace: default}
spec: {hosts: [reviews], http: [{route: [{destination: {host: reviews}}]}]}
---
kind: VirtualService
metadata: {name: gw-only, namespace: default}
spec:
  hosts: [details]
  gateways: [gw]
  http: [{route: [{destination: {host: details}}]}]
"""
    )
    push = bookinfo_push(docs)
    assert push.mesh_virtual_service("reviews.default.svc.cluster.local", "default").name == "exact"  # type: ignore[union-attr]
    assert push.mesh_virtual_service("details.default.svc.cluster.local", "default").name == "wild"  # type: ignore[union-attr]
    assert [v.name for v in push.virtual_services_for_gateway("default/gw")] == ["gw-only"]


def test_match_level_gateways_are_indexed() -> None:
    docs = from_yaml(
        """
kind: VirtualService
metadata: {name: vs, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match: [{gateways: [edge/public]}]
    route: [{destination: {host: reviews}}]
"""
    )
    push = bookinfo_push(docs)
    assert [v.name for v in push.virtual_services_for_gateway("edge/public")] == ["vs"]


def test_incremental_build_reuses_unchanged_entries() -> None:
    objects = stored(
        BOOKINFO_CORE + from_yaml(DR.format(name="r", ns="default", host="reviews", export='["*"]'))
    )
    snap = Registry().snapshot(objects)
    first = PushContext.build(objects, snap)
    second = PushContext.build(objects, snap, previous=first)
    host = "reviews.default.svc.cluster.local"
    assert second.destination_rule("default", host) is first.destination_rule("default", host)
    changed = [*objects[:-1], type(objects[-1])(objects[-1].key, objects[-1].body, 99)]
    third = PushContext.build(changed, snap, previous=second)
    assert third.destination_rule("default", host) is not first.destination_rule("default", host)
    assert third.revision == 99


def test_proxy_from_node() -> None:
    push = bookinfo_push()
    node = sidecar_node(app="reviews", ip="10.1.0.13", labels={"app": "reviews", "version": "v2"})
    proxy = Proxy.from_node(node, push)
    assert proxy.type == "sidecar" and proxy.namespace == "default"
    assert proxy.identity == "spiffe://cluster.local/ns/default/sa/bookinfo-reviews"
    assert [s.hostname for s in proxy.services] == ["reviews.default.svc.cluster.local"]
    assert proxy.target_ports() == [9080]
    assert proxy.interception_mode == "REDIRECT" and proxy.ip == "10.1.0.13"


def test_proxy_services_are_carried_over_while_the_service_definitions_are_the_same() -> None:
    def context(docs: list[dict[str, object]], previous: PushContext | None) -> PushContext:
        objects = stored(docs)
        return PushContext.build(objects, Registry().snapshot(objects), previous=previous)

    node = sidecar_node(app="reviews", ip="10.1.0.13", labels={"app": "reviews", "version": "v2"})
    rule = from_yaml(
        """
kind: DestinationRule
metadata: {name: reviews}
spec: {host: reviews, subsets: [{name: v9, labels: {version: v9}}]}
"""
    )
    first = context(BOOKINFO_CORE, None)
    before = Proxy.from_node(node, first)
    # A config change that is not a service definition: the very same instances.
    second = context(BOOKINFO_CORE + rule, first)
    assert second.services_epoch == first.services_epoch
    assert Proxy.from_node(node, second).instances is before.instances
    # A second service selecting the workload: selected again.
    also = service("reviews-canary", selector={"app": "reviews"})
    third = context(BOOKINFO_CORE + rule + [also], second)
    assert third.services_epoch == second.services_epoch + 1
    hosts = [s.hostname for s in Proxy.from_node(node, third).services]
    assert hosts == [
        "reviews-canary.default.svc.cluster.local",
        "reviews.default.svc.cluster.local",
    ]


def test_memo_runs_once() -> None:
    push = bookinfo_push()
    calls = []
    for _ in range(3):
        push.memo("k", lambda: calls.append(1) or len(calls))
    assert calls == [1]


def test_entries_are_typed_and_parsed_once_per_key_and_revision() -> None:
    from pilotfish.api.virtualservice import HTTPRoute

    objects = stored(BOOKINFO_CORE + from_yaml(_REVIEWS_VS))
    registry = Registry().snapshot(objects)
    first = PushContext.build(objects, registry)
    (vs,) = first.virtual_services
    assert isinstance(vs.http[0], HTTPRoute)
    route = vs.http[0].route
    assert [(d.destination.subset, d.weight) for d in route] == [("v1", 90), ("v2", 10)]
    assert vs.http[0].timeout is not None and vs.http[0].timeout.seconds == 2.5
    again = PushContext.build(objects, registry, previous=first)
    assert again.virtual_services[0] is vs  # same (key, revision): not parsed again


def test_an_object_that_does_not_fit_its_model_is_left_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    docs = from_yaml(_REVIEWS_VS)
    docs[0]["spec"]["http"][0]["route"][0]["weight"] = "ninety"
    push = push_for(BOOKINFO_CORE + docs)
    assert push.virtual_services == ()
    assert "VirtualService" in caplog.text and "ignored" in caplog.text


_REVIEWS_VS = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - timeout: 2.5s
    route:
    - {destination: {host: reviews, subset: v1}, weight: 90}
    - {destination: {host: reviews, subset: v2}, weight: 10}
"""
