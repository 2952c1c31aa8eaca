"""VirtualService delegation: Istio's rules for merging a root with its delegates."""

from __future__ import annotations

from pilotfish.api.typeurls import ROUTE_TYPE
from pilotfish.api.virtualservice import HTTPMatchRequest, StringMatch
from pilotfish.config.store.base import Key
from pilotfish.model import PushContext
from pilotfish.model.delegate import has_conflict, string_match_conflict
from pilotfish.translate.dependencies import Changes, scope_for
from pilotfish.translate.generator import generate
from tests.unit.translate.fixtures import (
    BOOKINFO_CORE,
    from_yaml,
    push_for,
    route_config,
    router_node,
    sidecar_node,
    stored,
)

ROOT = """
kind: VirtualService
metadata: {{name: root, namespace: default}}
spec:
  hosts: [reviews]
  http:
  - name: r
    match: [{{uri: {{prefix: /api}}}}, {{uri: {{prefix: /v2}}}}]
    timeout: 3s
    headers: {{request: {{set: {{x-root: "yes"}}}}}}
    delegate: {{name: reviews-delegate, namespace: {ns}}}
  - route: [{{destination: {{host: details}}}}]
"""

DELEGATE = """
kind: VirtualService
metadata: {{name: reviews-delegate, namespace: {ns}}}
spec:
  exportTo: {export}
  http:
  - name: d1
    match: [{{uri: {{prefix: /api/v1}}}}]
    route: [{{destination: {{host: ratings}}}}]
  - name: d2
    match: [{{uri: {{prefix: /other}}}}]
    route: [{{destination: {{host: ratings}}}}]
  - name: d3
    timeout: 1s
    route: [{{destination: {{host: reviews}}}}]
"""


def _push(ns: str = "default", export: str = '["*"]', delegate: bool = True):  # type: ignore[no-untyped-def]
    docs = from_yaml(ROOT.format(ns=ns))
    if delegate:
        docs += from_yaml(DELEGATE.format(ns=ns, export=export))
    return push_for(BOOKINFO_CORE + docs)


def test_root_rules_are_replaced_by_the_merged_delegate_rules() -> None:
    push = _push()
    vs = push.mesh_virtual_service("reviews.default.svc.cluster.local", "default")
    assert vs is not None and vs.name == "root"
    names = [r.name for r in vs.http]
    # d2 (/other) is under neither /api nor /v2: a conflict, left out.
    assert names == ["r-d1", "r-d3", None]
    d1, d3 = vs.http[0], vs.http[1]
    assert [m.uri.prefix for m in d1.match] == ["/api/v1"]  # type: ignore[union-attr]
    # A delegate rule without matches takes the root's matches.
    assert [m.uri.prefix for m in d3.match] == ["/api", "/v2"]  # type: ignore[union-attr]
    # Unset fields come from the root rule, set ones stay the delegate's.
    assert d1.timeout is not None and d1.timeout.seconds == 3
    assert d3.timeout is not None and d3.timeout.seconds == 1
    assert d1.headers is not None and d1.headers.request.set == {"x-root": "yes"}  # type: ignore[union-attr]
    assert all(r.delegate is None for r in vs.http)
    # The delegate alone applies nowhere.
    assert [v.name for v in push.virtual_services] == ["root"]


def test_delegate_hosts_resolve_in_the_delegate_namespace() -> None:
    push = _push(ns="team")
    vs = push.mesh_virtual_service("reviews.default.svc.cluster.local", "default")
    assert vs is not None
    assert vs.http[0].route[0].destination.host == "ratings.team.svc.cluster.local"
    assert vs.http[2].route[0].destination.host == "details"  # the root's own rule


def test_a_delegate_not_exported_to_the_root_namespace_leaves_its_rule_out() -> None:
    push = _push(ns="team", export='["."]')
    vs = push.mesh_virtual_service("reviews.default.svc.cluster.local", "default")
    assert vs is not None and [r.name for r in vs.http] == [None]
    exported = _push(ns="team", export='["default"]')
    vs = exported.mesh_virtual_service("reviews.default.svc.cluster.local", "default")
    assert vs is not None and [r.name for r in vs.http] == ["r-d1", "r-d3", None]


def test_a_missing_delegate_leaves_only_its_rule_out() -> None:
    push = _push(delegate=False)
    vs = push.mesh_virtual_service("reviews.default.svc.cluster.local", "default")
    assert vs is not None and [r.name for r in vs.http] == [None]


def test_routes_reach_envoy_merged() -> None:
    res = generate(sidecar_node("productpage"), _push())
    rc = route_config(res, "9080")
    vh = next(v for v in rc.virtual_hosts if v.name.startswith("reviews.default"))
    assert [r.name for r in vh.routes] == ["r-d1", "r-d3", "r-d3", ""]
    assert vh.routes[0].match.prefix == "/api/v1"
    assert vh.routes[0].route.cluster == "outbound|9080||ratings.default.svc.cluster.local"
    assert vh.routes[0].route.timeout.seconds == 3
    assert {h.header.key for h in vh.routes[0].request_headers_to_add} == {"x-root"}


def test_string_match_conflicts() -> None:
    def sm(**kw: str) -> StringMatch:
        return StringMatch(**kw)

    assert not string_match_conflict(None, sm(exact="/a"))
    assert not string_match_conflict(sm(prefix="/a"), None)
    assert not string_match_conflict(sm(prefix="/a"), sm(prefix="/a/b"))
    assert string_match_conflict(sm(prefix="/a/b"), sm(prefix="/a"))
    assert not string_match_conflict(sm(prefix="/a"), sm(exact="/a/x"))
    assert string_match_conflict(sm(exact="/a"), sm(prefix="/a"))
    assert string_match_conflict(sm(exact="/a"), sm(exact="/b"))
    assert not string_match_conflict(sm(exact="/a"), sm(exact="/a"))
    assert string_match_conflict(sm(regex="/a.*"), sm(prefix="/a"))
    assert string_match_conflict(sm(prefix="/a"), sm(regex="/a.*"))


def test_match_conflicts_on_headers_port_and_source() -> None:
    root = HTTPMatchRequest(headers={"end-user": StringMatch(exact="jason")}, port=9080)
    assert not has_conflict(root, HTTPMatchRequest(headers={"other": StringMatch(exact="x")}))
    assert has_conflict(root, HTTPMatchRequest(headers={"end-user": StringMatch(exact="bob")}))
    assert has_conflict(root, HTTPMatchRequest(port=9090))
    assert has_conflict(HTTPMatchRequest(sourceNamespace="a"), HTTPMatchRequest())
    assert has_conflict(HTTPMatchRequest(gateways=["mesh"]), HTTPMatchRequest(gateways=["g"]))
    assert has_conflict(HTTPMatchRequest(ignoreUriCase=True), HTTPMatchRequest())


def test_gateway_root_merges_delegate() -> None:
    docs = from_yaml(
        """
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
---
kind: VirtualService
metadata: {name: edge, namespace: default}
spec:
  hosts: ["bookinfo.example.com"]
  gateways: [gw]
  http:
  - match: [{uri: {prefix: /reviews}}]
    delegate: {name: reviews-routes, namespace: team}
---
kind: VirtualService
metadata: {name: reviews-routes, namespace: team}
spec:
  http:
  - match: [{uri: {exact: /reviews/1}}]
    route: [{destination: {host: ratings.default.svc.cluster.local}}]
  - route: [{destination: {host: reviews.default.svc.cluster.local}}]
"""
    )
    res = generate(router_node(), push_for(BOOKINFO_CORE + docs))
    rc = route_config(res, "http.80")
    vh = next(v for v in rc.virtual_hosts if "bookinfo.example.com" in v.domains)
    assert [(r.match.path or r.match.prefix, r.route.cluster) for r in vh.routes] == [
        ("/reviews/1", "outbound|9080||ratings.default.svc.cluster.local"),
        ("/reviews", "outbound|9080||reviews.default.svc.cluster.local"),
    ]


def test_a_delegate_change_reaches_the_proxies_of_its_root() -> None:
    base = BOOKINFO_CORE + from_yaml(ROOT.format(ns="team"))
    delegate = from_yaml(DELEGATE.format(ns="team", export='["*"]'))
    old = push_for(base + delegate)
    changed = from_yaml(DELEGATE.format(ns="team", export='["*"]'))
    changed[0]["spec"]["http"][0]["route"][0]["destination"]["host"] = "details"
    # The same objects, the delegate at a later revision.
    objs = stored([*base, *delegate, *changed])
    new = PushContext.build(objs, old.registry, previous=old)
    changes = Changes.between(old, new)
    assert Key("VirtualService", "default", "root") in changes.configs
    scope = scope_for(sidecar_node("productpage"), changes)
    assert scope is not None and ROUTE_TYPE in scope
