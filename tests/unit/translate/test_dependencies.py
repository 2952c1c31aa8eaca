"""Push scope: a change to X reaches exactly the proxies and resource types that depend on X.

Two kinds of checks. Each rule is pinned: the exact scope every proxy of a small mesh gets for
one change. And every change is checked against the ground truth: the configuration of every
proxy is generated in full before and after the change, and every resource whose content
differs must be inside that proxy's scope (nothing that changed is left unpushed).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest

from pilotfish.api.node import NodeInfo
from pilotfish.api.typeurls import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    SECRET_TYPE,
    VIRTUAL_HOST_TYPE,
)
from pilotfish.config.store.base import Key, StoredObject
from pilotfish.model.push_context import PushContext
from pilotfish.registry.registry import Registry
from pilotfish.translate.dependencies import (
    FULL,
    Changes,
    Scope,
    route_rules,
    scope_for,
    secret_rules,
)
from pilotfish.translate.generator import generate_config
from pilotfish.xds.secrets import secrets_for

from .fixtures import (
    BOOKINFO_CORE,
    BOOKINFO_NETWORKING,
    from_yaml,
    pod,
    router_node,
    service,
    sidecar_node,
    stored,
)

CDS, EDS, LDS, RDS, SDS = CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, SECRET_TYPE
VHDS = VIRTUAL_HOST_TYPE
#: The VHDS virtual host of reviews (port 9080) in a sidecar's route config "9080".
REVIEWS_VHOST = frozenset({"9080/reviews.default.svc.cluster.local:9080"})
TCP_VHOSTS = frozenset({"9080/ratings.default.svc.cluster.local:9080"})

OTHER = [
    service("billing", ns="other"),
    pod("billing-a", "10.2.0.10", {"app": "billing", "version": "v1"}, ns="other"),
]
BASE = BOOKINFO_CORE + BOOKINFO_NETWORKING + OTHER

NODES = {
    "productpage": sidecar_node("productpage", "10.1.0.10"),
    "reviews": NodeInfo(
        proxy_type="sidecar",
        ip="10.1.0.12",
        pod_name="reviews-v1-a",
        namespace="default",
        labels={"app": "reviews", "version": "v1"},
        service_account="bookinfo-reviews",
    ),
    "billing": NodeInfo(
        proxy_type="sidecar",
        ip="10.2.0.10",
        pod_name="billing-a",
        namespace="other",
        labels={"app": "billing", "version": "v1"},
    ),
    "gateway": router_node(),
}


def host(name: str, ns: str = "default") -> str:
    return f"{name}.{ns}.svc.cluster.local"


def clusters(name: str, *subsets: str, port: int = 9080, ns: str = "default") -> frozenset[str]:
    return frozenset(f"outbound|{port}|{s}|{host(name, ns)}" for s in ("", *subsets))


def replaced(docs: list[dict[str, Any]], kind: str, name: str, **changes: Any) -> list[Any]:
    """``docs`` with the spec of ``kind/name`` updated by ``changes`` (a new revision)."""
    out = copy.deepcopy(docs)
    for d in out:
        if d["kind"] == kind and d["metadata"]["name"] == name:
            d["spec"].update(changes)
            out.remove(d)
            out.append(d)
            return out
    raise AssertionError(f"{kind}/{name} not in the docs")


def _objects(docs: list[Any], known: dict[Key, StoredObject]) -> list[StoredObject]:
    """Stored objects as a store keeps them: an object equal to one in ``known`` keeps its
    revision, any other gets a new one."""
    out = []
    top = max((o.revision for o in known.values()), default=0)
    for obj in stored(docs):
        same = known.get(obj.key)
        if same is not None and same.body == obj.body:
            out.append(same)
        else:
            top += 1
            out.append(StoredObject(obj.key, obj.body, top))
    return out


def _context(objects: list[StoredObject], previous: PushContext | None) -> PushContext:
    snap = Registry().snapshot(objects)
    return PushContext.build(objects, snap, previous=previous, credentials=secrets_for)


def contexts(before: list[Any], after: list[Any]) -> tuple[PushContext, PushContext]:
    first = _objects(before, {})
    second = _objects(after, {o.key: o for o in first})
    old = _context(first, None)
    return old, _context(second, old)


def scopes(before: list[Any], after: list[Any]) -> dict[str, Scope | None]:
    old, new = contexts(before, after)
    changes = Changes.between(old, new)
    return {name: scope_for(node, changes) for name, node in NODES.items()}


def changed_resources(old: PushContext, new: PushContext, node: NodeInfo) -> dict[str, set[str]]:
    """Type -> names of the resources whose content differs between the two contexts."""
    a, b = generate_config(node, old), generate_config(node, new)
    out: dict[str, set[str]] = {}
    for t in (CDS, EDS, LDS, RDS, VHDS):
        ra, rb = a.resources[t], b.resources[t]
        for n in ra.keys() | rb.keys():
            ma, mb = ra.get(n), rb.get(n)
            sa = ma.SerializeToString(deterministic=True) if ma is not None else None
            sb = mb.SerializeToString(deterministic=True) if mb is not None else None
            if sa != sb:
                out.setdefault(t, set()).add(n)
    if set(a.secret_names) != set(b.secret_names):
        out[SDS] = set(a.secret_names) ^ set(b.secret_names)
    return out


def covered(scope: Scope | None, changed: dict[str, set[str]]) -> list[str]:
    """What changed but lies outside ``scope``."""
    missing = []
    for t, names in changed.items():
        if scope is None or t not in scope:
            missing += [f"{t.rsplit('.', 1)[-1]} {n}" for n in sorted(names)]
            continue
        allowed = scope[t]
        if allowed is not None:
            missing += [f"{t.rsplit('.', 1)[-1]} {n}" for n in sorted(names - allowed)]
    return missing


# ---- the changes ----------------------------------------------------------------------------

VS_WEIGHT = replaced(
    BASE,
    "VirtualService",
    "reviews",
    http=[
        {
            "route": [
                {"destination": {"host": "reviews", "subset": "v1"}, "weight": 50},
                {"destination": {"host": "reviews", "subset": "v3"}, "weight": 50},
            ]
        }
    ],
)
VS_LOCAL = replaced(VS_WEIGHT, "VirtualService", "reviews", exportTo=["."])
DR_SUBSET = replaced(
    BASE,
    "DestinationRule",
    "reviews",
    subsets=[{"name": f"v{i}", "labels": {"version": f"v{i}"}} for i in (1, 2, 3, 4)],
)
DR_WILDCARD = BASE + from_yaml(
    """
kind: DestinationRule
metadata: {name: all, namespace: istio-system}
spec:
  host: "*.local"
  trafficPolicy: {connectionPool: {tcp: {maxConnections: 7}}}
"""
)
DR_HASH = replaced(
    BASE,
    "DestinationRule",
    "reviews",
    trafficPolicy={"loadBalancer": {"consistentHash": {"httpHeaderName": "x-user"}}},
)
DR_SUBSET_HASH = replaced(
    BASE,
    "DestinationRule",
    "reviews",
    subsets=[
        {"name": "v1", "labels": {"version": "v1"}},
        {"name": "v2", "labels": {"version": "v2"}},
        {
            "name": "v3",
            "labels": {"version": "v3"},
            "trafficPolicy": {"loadBalancer": {"consistentHash": {"httpHeaderName": "x-user"}}},
        },
    ],
)
DR_CREDENTIAL = replaced(
    BASE,
    "DestinationRule",
    "reviews",
    trafficPolicy={"tls": {"mode": "SIMPLE", "credentialName": "client-cert"}},
)
ENDPOINT_ADDED = [*BASE, pod("reviews-v4-a", "10.1.0.16", {"app": "reviews", "version": "v4"})]
GATEWAY_VS = replaced(
    BASE,
    "VirtualService",
    "bookinfo",
    http=[{"route": [{"destination": {"host": "productpage", "port": {"number": 9080}}}]}],
)
GATEWAY = replaced(
    BASE,
    "Gateway",
    "bookinfo-gateway",
    servers=[{"port": {"number": 8081, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}],
)
AUTHZ_REVIEWS = BASE + from_yaml(
    """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: reviews-viewer, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  action: ALLOW
  rules: [{from: [{source: {namespaces: [default]}}]}]
"""
)
MESH_MTLS = BASE + from_yaml(
    """
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
"""
)
GATEWAY_SECRET = BASE + from_yaml(
    """
kind: Secret
metadata: {name: bookinfo-cert, namespace: istio-system}
type: kubernetes.io/tls
stringData: {tls.crt: x, tls.key: y}
"""
)
OTHER_SERVICE = [*BASE, service("ledger", ns="other", selector={"app": "ledger"})]
LOCAL_SERVICE = [
    *BASE,
    {
        **service("private", ns="other"),
        "metadata": {
            "name": "private",
            "namespace": "other",
            "annotations": {"networking.istio.io/exportTo": "."},
        },
    },
]
SIDECAR_DEFAULT = BASE + from_yaml(
    """
kind: Sidecar
metadata: {name: default, namespace: default}
spec: {egress: [{hosts: ["./*"]}]}
"""
)
MESH_CONFIG = BASE + from_yaml(
    """
apiVersion: install.istio.io/v1alpha1
kind: IstioOperator
metadata: {name: mesh, namespace: istio-system}
spec: {meshConfig: {accessLogFile: /dev/stdout}}
"""
)
UNRELATED = BASE + from_yaml(
    """
kind: ServiceAccount
metadata: {name: someone, namespace: default}
"""
)

TCP_VS = BASE + from_yaml(
    """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings-tcp, namespace: default}
spec:
  hosts: [ratings]
  tcp: [{route: [{destination: {host: ratings, subset: v1}}]}]
"""
)
OTHER_RULE = BASE + from_yaml(
    """
kind: DestinationRule
metadata: {name: billing, namespace: other}
spec:
  host: billing
  exportTo: ["."]
  subsets: [{name: v1, labels: {version: v1}}]
"""
)
DELEGATE_BASE = BASE + from_yaml(
    """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: details-root, namespace: default}
spec:
  hosts: [details]
  exportTo: ["."]
  http: [{match: [{uri: {prefix: /}}], delegate: {name: details-routes, namespace: other}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: details-routes, namespace: other}
spec:
  http: [{route: [{destination: {host: details.default.svc.cluster.local, subset: v1}}]}]
"""
)
DELEGATE_CHANGED = replaced(
    DELEGATE_BASE,
    "VirtualService",
    "details-routes",
    http=[
        {"route": [{"destination": {"host": "details.default.svc.cluster.local", "subset": "v2"}}]}
    ],
)
SIDECAR_SECRET = BASE + from_yaml(
    """
kind: Secret
metadata: {name: client-cert, namespace: default}
type: kubernetes.io/tls
stringData: {tls.crt: x, tls.key: y}
"""
)
OTHER_TELEMETRY = BASE + from_yaml(
    """
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: logs, namespace: other}
spec: {accessLogging: [{providers: [{name: envoy}]}]}
"""
)
OTHER_AUTHN = BASE + from_yaml(
    """
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: other}
spec:
  jwtRules: [{issuer: "https://issuer.example", jwks: '{"keys": []}'}]
"""
)
LOCAL_SERVICE_ENDPOINT = [
    *LOCAL_SERVICE,
    pod("private-a", "10.2.0.20", {"app": "private"}, ns="other"),
]
UNSELECTED_GATEWAY_BASE = BASE + from_yaml(
    """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: egress, namespace: istio-system}
spec:
  selector: {istio: egressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: via-egress, namespace: istio-system}
spec:
  hosts: [example.com]
  gateways: [egress]
  http: [{route: [{destination: {host: example.com}}]}]
"""
)
UNSELECTED_GATEWAY_VS = replaced(
    UNSELECTED_GATEWAY_BASE,
    "VirtualService",
    "via-egress",
    http=[{"route": [{"destination": {"host": "example.org"}}]}],
)
WORKLOAD_ENTRY = BASE + from_yaml(
    """
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-vm, namespace: default}
spec: {address: 10.9.0.1, labels: {app: reviews, version: v1}}
"""
)
SERVICE_ENTRY = BASE + from_yaml(
    """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: httpbin, namespace: default}
spec:
  hosts: [httpbin.org]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS
  location: MESH_EXTERNAL
"""
)

ALL_CHANGES = {
    "vs weight": VS_WEIGHT,
    "vs exported to its namespace": VS_LOCAL,
    "dr subset": DR_SUBSET,
    "dr wildcard": DR_WILDCARD,
    "dr consistent hash": DR_HASH,
    "dr subset consistent hash": DR_SUBSET_HASH,
    "dr credential": DR_CREDENTIAL,
    "endpoint added": ENDPOINT_ADDED,
    "gateway vs": GATEWAY_VS,
    "gateway": GATEWAY,
    "authz": AUTHZ_REVIEWS,
    "mesh mtls": MESH_MTLS,
    "gateway secret": GATEWAY_SECRET,
    "service in other": OTHER_SERVICE,
    "local service in other": LOCAL_SERVICE,
    "sidecar": SIDECAR_DEFAULT,
    "mesh config": MESH_CONFIG,
    "unrelated": UNRELATED,
    "tcp vs": TCP_VS,
    "dr local to other": OTHER_RULE,
    "sidecar secret": SIDECAR_SECRET,
    "telemetry in other": OTHER_TELEMETRY,
    "request authn in other": OTHER_AUTHN,
    "workload entry": WORKLOAD_ENTRY,
    "service entry": SERVICE_ENTRY,
}


# ---- the rules, pinned ------------------------------------------------------------------------


def test_virtual_service_reaches_routes_of_sidecars_that_see_it() -> None:
    # Route configs (whole: one per port) and, for sidecars on VHDS, the one virtual host.
    routes = {RDS: None, VHDS: REVIEWS_VHOST}
    assert scopes(BASE, VS_WEIGHT) == {
        "productpage": routes,
        "reviews": routes,
        "billing": routes,
        "gateway": None,
    }


def test_virtual_service_exported_to_its_namespace_leaves_other_namespaces_alone() -> None:
    # Before: exported everywhere; after: to its own namespace. "other" loses it (reached);
    # a further change of the local VirtualService no longer reaches "other".
    routes = {RDS: None, VHDS: REVIEWS_VHOST}
    assert scopes(VS_WEIGHT, VS_LOCAL)["billing"] == routes
    again = replaced(VS_LOCAL, "VirtualService", "reviews", http=[{"route": []}])
    assert scopes(VS_LOCAL, again) == {
        "productpage": routes,
        "reviews": routes,
        "billing": None,
        "gateway": None,
    }


def test_destination_rule_reaches_the_host_clusters_only() -> None:
    # No consistent hash and no credentialName anywhere: routes and secrets cannot change.
    reviews = clusters("reviews", "v1", "v2", "v3", "v4")
    expected = {CDS: reviews, EDS: reviews}
    sidecar = expected  # no route can change: no virtual host either
    assert scopes(BASE, DR_SUBSET) == {
        "productpage": sidecar,
        "reviews": sidecar,
        "billing": sidecar,
        "gateway": expected,
    }


def test_destination_rule_with_a_consistent_hash_reaches_routes_too() -> None:
    # The route to a consistent-hash subset carries its hash_policy.
    reviews = clusters("reviews", "v1", "v2", "v3")
    expected = {CDS: reviews, EDS: reviews, RDS: None}
    # Sidecars on VHDS: the virtual host of the rule's host.
    sidecar = {**expected, VHDS: REVIEWS_VHOST}
    assert scopes(BASE, DR_HASH) == {
        "productpage": sidecar,
        "reviews": sidecar,
        "billing": sidecar,
        "gateway": expected,
    }


def test_destination_rule_with_a_credential_reaches_secrets_too() -> None:
    reviews = clusters("reviews", "v1", "v2", "v3")
    expected = {CDS: reviews, EDS: reviews, SDS: None}
    assert scopes(BASE, DR_CREDENTIAL) == {n: expected for n in NODES}


def test_wildcard_destination_rule_reaches_every_cluster() -> None:
    # In the root namespace, exported everywhere: every proxy resolves it.
    expected = {CDS: None, EDS: None}
    assert scopes(BASE, DR_WILDCARD) == {n: expected for n in NODES}


def test_endpoint_added_reaches_the_service_clusters_and_endpoints_only() -> None:
    reviews = clusters("reviews", "v1", "v2", "v3")
    assert scopes(BASE, ENDPOINT_ADDED) == {
        "productpage": {CDS: reviews, EDS: reviews},
        "reviews": {CDS: reviews, EDS: reviews},
        "billing": {CDS: reviews, EDS: reviews},
        "gateway": {CDS: reviews, EDS: reviews},
    }


def test_gateway_virtual_service_reaches_the_gateway_only() -> None:
    assert scopes(BASE, GATEWAY_VS) == {
        "productpage": None,
        "reviews": None,
        "billing": None,
        "gateway": {RDS: None, LDS: None},
    }


def test_gateway_reaches_the_routers_it_selects() -> None:
    assert scopes(BASE, GATEWAY) == {
        "productpage": None,
        "reviews": None,
        "billing": None,
        "gateway": FULL,
    }


def test_authorization_policy_reaches_listeners_of_selected_workloads() -> None:
    assert scopes(BASE, AUTHZ_REVIEWS) == {
        "productpage": None,
        "reviews": {LDS: None},
        "billing": None,
        "gateway": None,
    }


def test_root_namespace_policy_reaches_every_listener() -> None:
    assert scopes(BASE, MESH_MTLS) == {n: {LDS: None} for n in NODES}


def test_secret_reaches_its_users() -> None:
    assert scopes(BASE, GATEWAY_SECRET) == {
        "productpage": None,
        "reviews": None,
        "billing": None,
        "gateway": {SDS: None, LDS: None, RDS: None},
    }


def test_service_reaches_everything_of_the_proxies_that_see_it() -> None:
    assert scopes(BASE, OTHER_SERVICE) == dict.fromkeys(NODES, FULL)
    assert scopes(BASE, LOCAL_SERVICE) == {
        "productpage": None,
        "reviews": None,
        "billing": FULL,
        "gateway": None,
    }


def test_sidecar_resource_reaches_its_namespace() -> None:
    assert scopes(BASE, SIDECAR_DEFAULT) == {
        "productpage": FULL,
        "reviews": FULL,
        "billing": None,
        "gateway": None,
    }


def test_mesh_config_reaches_everything() -> None:
    assert scopes(BASE, MESH_CONFIG) == dict.fromkeys(NODES, FULL)


def test_inert_kinds_reach_nothing() -> None:
    old, new = contexts(BASE, UNRELATED)
    changes = Changes.between(old, new)
    assert changes.empty
    assert {n: scope_for(node, changes) for n, node in NODES.items()} == dict.fromkeys(NODES)


def test_own_pod_change_reaches_everything_of_that_proxy() -> None:
    relabelled = [
        pod("reviews-v1-a", "10.1.0.12", {"app": "reviews", "version": "v1", "x": "y"})
        if d["kind"] == "Pod" and d["metadata"]["name"] == "reviews-v1-a"
        else d
        for d in BASE
    ]
    assert scopes(BASE, relabelled)["reviews"] == FULL


# ---- the ground truth -------------------------------------------------------------------------


@pytest.mark.parametrize("change", sorted(ALL_CHANGES))
def test_every_changed_resource_is_in_scope(change: str) -> None:
    old, new = contexts(BASE, ALL_CHANGES[change])
    changes = Changes.between(old, new)
    for name, node in NODES.items():
        missing = covered(scope_for(node, changes), changed_resources(old, new, node))
        assert not missing, f"{change}: {name} misses {missing}"


VHDS_ON = from_yaml(
    """
apiVersion: install.istio.io/v1alpha1
kind: IstioOperator
metadata: {name: vhds, namespace: istio-system}
spec: {meshConfig: {virtualHostDiscovery: true}}
"""
)


@pytest.mark.parametrize("change", sorted(ALL_CHANGES))
def test_every_changed_virtual_host_is_in_scope(change: str) -> None:
    # Sidecars on Delta with VHDS on: their virtual hosts are resources of their own, and a
    # change reaches the ones it changes (route configs then hold only the fallback).
    old, new = contexts(BASE + VHDS_ON, ALL_CHANGES[change] + VHDS_ON)
    changes = Changes.between(old, new)
    explicit = dataclasses.replace(
        NODES["productpage"],
        interception_mode="NONE",
        outbound_port=15001,
        inbound_ports={9080: 15006},
    )
    for name, node in {**NODES, "explicit": explicit}.items():
        node = dataclasses.replace(node, delta_xds=True)
        changed = changed_resources(old, new, node)
        missing = covered(scope_for(node, changes), changed)
        assert not missing, f"{change}: {name} misses {missing}"
        if change == "vs weight" and name == "productpage":
            # One virtual host changed, not the route config.
            assert changed == {VHDS: set(REVIEWS_VHOST)}
        if change == "vs weight" and name == "explicit":
            assert changed == {VHDS: {"15001/reviews.default.svc.cluster.local:9080"}}


@pytest.mark.parametrize("change", ["vs weight", "endpoint added", "authz", "gateway vs"])
def test_scoped_changes_do_change_what_they_reach(change: str) -> None:
    # The precise rules are not vacuous: each reaches some proxy whose config did change.
    old, new = contexts(BASE, ALL_CHANGES[change])
    changes = Changes.between(old, new)
    assert any(
        scope_for(node, changes) is not None and changed_resources(old, new, node)
        for node in NODES.values()
    )


MESHED_BASE = [
    pod(
        d["metadata"]["name"],
        d["status"]["podIP"],
        {**d["metadata"]["labels"], "security.istio.io/tlsMode": "istio"},
        ns=d["metadata"].get("namespace", "default"),
    )
    if d["kind"] == "Pod" and (d.get("status") or {}).get("podIP")
    else d
    for d in BASE
]
PORT_DISABLE = MESHED_BASE + from_yaml(
    """
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: reviews, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  portLevelMtls: {9080: {mode: DISABLE}}
"""
)
SIDECAR_VS = SIDECAR_DEFAULT + from_yaml(
    """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: to-billing, namespace: default}
spec:
  hosts: [details]
  http: [{route: [{destination: {host: billing.other.svc.cluster.local}}]}]
"""
)


def test_port_level_disable_reaches_the_clients_clusters_and_endpoints() -> None:
    old, new = contexts(MESHED_BASE, PORT_DISABLE)
    changes = Changes.between(old, new)
    for name, node in NODES.items():
        scope = scope_for(node, changes)
        assert scope is not None and CDS in scope and EDS in scope, name
        assert not covered(scope, changed_resources(old, new, node)), name
    assert changed_resources(old, new, NODES["productpage"]).get(EDS)


def test_virtual_service_under_a_sidecar_reaches_the_imported_clusters() -> None:
    old, new = contexts(SIDECAR_DEFAULT, SIDECAR_VS)
    changes = Changes.between(old, new)
    changed = changed_resources(old, new, NODES["productpage"])
    assert "outbound|9080||billing.other.svc.cluster.local" in changed.get(CDS, set())
    for name, node in NODES.items():
        assert not covered(scope_for(node, changes), changed_resources(old, new, node)), name


def test_next_context_reuses_the_clusters_a_change_did_not_touch() -> None:
    first = _objects(BASE, {})
    second = _objects(ENDPOINT_ADDED, {o.key: o for o in first})
    node = NODES["productpage"]
    old = _context(first, None)
    before = generate_config(node, old).resources[CDS]
    # Built after the old context was used, as the control plane does.
    after = generate_config(node, _context(second, old)).resources[CDS]
    reviews = clusters("reviews", "v1", "v2", "v3")
    same = {n for n in before if n in after and before[n] is after[n]}
    # Every outbound cluster but those of the service whose endpoints changed is the very
    # same object (not rebuilt); those of reviews are rebuilt.
    outbound = {n for n in before if n.startswith("outbound|")}
    assert outbound - reviews <= same
    assert not reviews & same


def test_clusters_are_carried_over_only_while_the_peer_authentications_are_the_same() -> None:
    """Automatic mTLS reads the server's PeerAuthentication: a cluster carried over from the
    previous context would keep sending mTLS to a port now set to DISABLE."""
    from pilotfish.translate.clusters import _cluster_policies

    first = _objects(MESHED_BASE, {})
    unchanged = _objects(ENDPOINT_ADDED, {o.key: o for o in first})
    disabled = _objects(PORT_DISABLE, {o.key: o for o in first})
    old = _context(first, None)
    assert _cluster_policies(_context(unchanged, old)) == _cluster_policies(old)
    assert _cluster_policies(_context(disabled, old)) != _cluster_policies(old)


# ---- more rules, pinned -----------------------------------------------------------------------


def test_tcp_virtual_service_reaches_listeners_too() -> None:
    # TCP routes live in the listeners' filter chains, HTTP routes in route configurations.
    expected = {RDS: None, LDS: None, VHDS: TCP_VHOSTS}
    assert scopes(BASE, TCP_VS) == {
        "productpage": expected,
        "reviews": expected,
        "billing": expected,
        "gateway": None,
    }


def test_destination_rule_exported_to_its_namespace_reaches_that_namespace_only() -> None:
    billing = clusters("billing", "v1", ns="other")
    assert scopes(BASE, OTHER_RULE) == {
        "productpage": None,
        "reviews": None,
        "billing": {CDS: billing, EDS: billing},
        "gateway": None,
    }


def test_delegate_change_reaches_the_proxies_of_its_root() -> None:
    # The delegate lives in "other"; its root is exported to "default" only.
    routes = {RDS: None, VHDS: frozenset({"9080/details.default.svc.cluster.local:9080"})}
    assert scopes(DELEGATE_BASE, DELEGATE_CHANGED) == {
        "productpage": routes,
        "reviews": routes,
        "billing": None,
        "gateway": None,
    }
    old, new = contexts(DELEGATE_BASE, DELEGATE_CHANGED)
    changes = Changes.between(old, new)
    for name, node in NODES.items():
        assert not covered(scope_for(node, changes), changed_resources(old, new, node)), name
    assert changed_resources(old, new, NODES["productpage"]).get(RDS)


def test_secret_reaches_its_namespace_and_the_routers_of_its_namespace_gateways() -> None:
    # The router runs in istio-system, but bookinfo-gateway (in default) selects it: a
    # credentialName of that Gateway is looked up in default.
    assert scopes(BASE, SIDECAR_SECRET) == {
        "productpage": {SDS: None},
        "reviews": {SDS: None},
        "billing": None,
        "gateway": {SDS: None, LDS: None, RDS: None},
    }


def test_telemetry_reaches_its_namespace_only() -> None:
    assert scopes(BASE, OTHER_TELEMETRY) == {
        "productpage": None,
        "reviews": None,
        "billing": FULL,
        "gateway": None,
    }


def test_policy_without_selector_reaches_its_namespace_listeners_only() -> None:
    assert scopes(BASE, OTHER_AUTHN) == {
        "productpage": None,
        "reviews": None,
        "billing": {LDS: None},
        "gateway": None,
    }


def test_endpoint_of_a_local_service_reaches_only_its_namespace() -> None:
    private = clusters("private", ns="other")
    assert scopes(LOCAL_SERVICE, LOCAL_SERVICE_ENDPOINT) == {
        "productpage": None,
        "reviews": None,
        "billing": {CDS: private, EDS: private},
        "gateway": None,
    }
    old, new = contexts(LOCAL_SERVICE, LOCAL_SERVICE_ENDPOINT)
    assert changed_resources(old, new, NODES["billing"]).get(EDS)


def test_virtual_service_of_a_gateway_no_router_runs_reaches_nothing() -> None:
    assert scopes(UNSELECTED_GATEWAY_BASE, UNSELECTED_GATEWAY_VS) == dict.fromkeys(NODES)


def test_workload_entry_joining_a_service_reaches_its_clusters_and_endpoints() -> None:
    reviews = clusters("reviews", "v1", "v2", "v3")
    assert scopes(BASE, WORKLOAD_ENTRY) == {n: {CDS: reviews, EDS: reviews} for n in NODES}
    old, new = contexts(BASE, WORKLOAD_ENTRY)
    assert changed_resources(old, new, NODES["productpage"]).get(EDS)


def test_service_entry_reaches_everything_of_the_proxies_that_see_it() -> None:
    assert scopes(BASE, SERVICE_ENTRY) == dict.fromkeys(NODES, FULL)


# ---- DestinationRules that routes and secrets read ---------------------------------------------

ROOT_HASH_RULE = from_yaml(
    """
kind: DestinationRule
metadata: {name: reviews-hash, namespace: istio-system}
spec:
  host: reviews.default.svc.cluster.local
  trafficPolicy: {loadBalancer: {consistentHash: {useSourceIp: true}}}
"""
)
# The rule of default (no hash) shadows the root namespace's (hash) for every proxy: removing
# it changes routes, though neither version of the changed rule sets a hash.
SHADOWED = BASE + ROOT_HASH_RULE
UNSHADOWED = [
    d
    for d in SHADOWED
    if not (d["kind"] == "DestinationRule" and d["metadata"]["name"] == "reviews")
]


def test_a_rule_that_shadows_a_hash_rule_reaches_routes() -> None:
    old, new = contexts(SHADOWED, UNSHADOWED)
    changes = Changes.between(old, new)
    for name, node in NODES.items():
        scope = scope_for(node, changes)
        assert scope is not None and RDS in scope, name
        assert not covered(scope, changed_resources(old, new, node)), name
    assert changed_resources(old, new, NODES["productpage"]).get(RDS)


def test_rules_routes_and_secrets_read() -> None:
    old, new = contexts(BASE, DR_HASH)
    assert route_rules(old) == frozenset()
    # Every rule of the hashed host (none other here) and every wildcard rule.
    assert route_rules(new) == {Key("DestinationRule", "default", "reviews")}
    assert secret_rules(new) == frozenset()
    wild, _ = contexts(DR_WILDCARD + ROOT_HASH_RULE, BASE)
    assert route_rules(wild) == {
        Key("DestinationRule", "default", "reviews"),
        Key("DestinationRule", "istio-system", "reviews-hash"),
        Key("DestinationRule", "istio-system", "all"),
    }
    # A hash set on a subset's port counts too.
    port_hash = replaced(
        BASE,
        "DestinationRule",
        "ratings",
        subsets=[
            {
                "name": "v1",
                "labels": {"version": "v1"},
                "trafficPolicy": {
                    "portLevelSettings": [
                        {"port": {"number": 9080}, "loadBalancer": {"consistentHash": {}}}
                    ]
                },
            }
        ],
    )
    subset, port = contexts(DR_SUBSET_HASH, port_hash)
    assert route_rules(subset) == {Key("DestinationRule", "default", "reviews")}
    assert route_rules(port) == {Key("DestinationRule", "default", "ratings")}
    cred, _ = contexts(DR_CREDENTIAL, BASE)
    assert secret_rules(cred) == {Key("DestinationRule", "default", "reviews")}


def _routes_across(before: list[Any], after: list[Any], node: NodeInfo) -> tuple[Any, Any, Any]:
    """The route configurations of ``node``: built from ``before``, then from ``after`` in the
    next context (built after the first was used, as the control plane does), then from
    ``after`` in a fresh context (nothing carried over)."""
    first = _objects(before, {})
    second = _objects(after, {o.key: o for o in first})
    old = _context(first, None)
    a = generate_config(node, old).resources[RDS]
    b = generate_config(node, _context(second, old)).resources[RDS]
    fresh = generate_config(node, _context(second, None)).resources[RDS]
    return a, b, fresh


def _same_bytes(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.keys() == b.keys() and all(
        a[n].SerializeToString(deterministic=True) == b[n].SerializeToString(deterministic=True)
        for n in a
    )


@pytest.mark.parametrize(
    ("before", "after", "carried"),
    [
        (BASE, DR_SUBSET, True),
        (BASE, DR_CREDENTIAL, True),
        (BASE, DR_HASH, False),
        (SHADOWED, UNSHADOWED, False),
        (BASE, VS_WEIGHT, False),
    ],
    ids=["subset", "credential", "hash", "shadowing rule", "virtual service"],
)
def test_route_configurations_are_carried_over_only_while_no_rule_they_read_changed(
    before: list[Any], after: list[Any], carried: bool
) -> None:
    node = NODES["productpage"]
    a, b, fresh = _routes_across(before, after, node)
    # What was carried over (or rebuilt) is what a fresh build gives.
    assert _same_bytes(b, fresh)
    assert all(b[n] is a[n] for n in a) == carried
    if not carried:
        assert not _same_bytes(a, b)


@pytest.mark.parametrize("change", ["dr subset", "endpoint added", "dr consistent hash"])
def test_a_generation_narrowed_to_the_scope_gives_the_same_resources_in_scope(
    change: str,
) -> None:
    # What a scoped push generates: the names in scope, as a whole generation gives them.
    old, new = contexts(BASE, ALL_CHANGES[change])
    changes = Changes.between(old, new)
    for name, node in NODES.items():
        scope = scope_for(node, changes)
        assert scope is not None, name
        types = frozenset(scope) | {EDS}
        names = {t: n for t, n in scope.items() if n is not None}
        whole = generate_config(node, new).resources
        narrowed = generate_config(node, new, types, names).resources
        for t in types:
            wanted = scope.get(t)
            if t == EDS and wanted is not None:
                wanted = wanted | (scope.get(CDS) or frozenset())
            expected = (
                whole[t] if wanted is None else {n: whole[t][n] for n in wanted & whole[t].keys()}
            )
            got = (
                narrowed[t]
                if wanted is None
                else {n: narrowed[t][n] for n in wanted & narrowed[t].keys()}
            )
            assert _same_bytes(got, expected), (name, t)
        if node.proxy_type == "sidecar":
            # Only what was named (and the inbound clusters), not every cluster of the mesh.
            assert len(narrowed[CDS]) < len(whole[CDS]), name


# ---- a sidecar connecting -----------------------------------------------------------------------

#: Sidecars with no Pod object (a VM, explicit mode; or captured, as the scale benchmark's): their
#: endpoint exists through their connection only.
JOINING = {
    "captured": NodeInfo(
        proxy_type="sidecar",
        ip="10.1.0.40",
        pod_name="ratings-vm-1",
        namespace="default",
        labels={"app": "ratings", "version": "v1"},
        service_account="bookinfo-ratings",
    ),
    "explicit": NodeInfo(
        proxy_type="sidecar",
        ip="10.1.0.41",
        pod_name="reviews-vm-1",
        namespace="default",
        labels={"app": "reviews", "version": "v2", "topology.istio.io/subzone": "z1"},
        service_account="bookinfo-reviews",
        interception_mode="NONE",
        outbound_port=15001,
        inbound_ports={9080: 19080},
    ),
}


def _connect_contexts(joining: NodeInfo, docs: list[Any]) -> tuple[PushContext, PushContext]:
    """The contexts before and after ``joining``'s sidecar connects (one registry)."""
    objects = _objects(docs, {})
    registry = Registry()
    old = PushContext.build(objects, registry.snapshot(objects), credentials=secrets_for)
    registry.sidecars.connected(joining)
    new = PushContext.build(
        objects, registry.snapshot(objects), previous=old, credentials=secrets_for
    )
    return old, new


@pytest.mark.parametrize("mode", sorted(JOINING))
def test_a_sidecar_connecting_is_an_endpoint_change_for_itself_too(mode: str) -> None:
    # Its own configuration does not read its connected-sidecar workload beyond its endpoint:
    # it is not generated twice in full (a storm of new proxies), and every resource of every
    # proxy that the connection changes is still in scope (its own included).
    joining = JOINING[mode]
    old, new = _connect_contexts(joining, BASE)
    changes = Changes.between(old, new)
    service = "ratings" if mode == "captured" else "reviews"
    expected = clusters(service, "v1", "v2", *(("v3",) if service == "reviews" else ()))
    for name, node in {**NODES, "joining": joining}.items():
        scope = scope_for(node, changes)
        assert scope == {CDS: expected, EDS: expected}, name
        missing = covered(scope, changed_resources(old, new, node))
        assert not missing, f"{name} misses {missing}"


def test_a_sidecar_connecting_to_its_pod_reaches_everything_of_it() -> None:
    # The Pod's workload is merged into the connected sidecar's (the Pod's uid goes): what the
    # proxy reads of it may change, so it is regenerated in full, as before.
    joining = JOINING["captured"]
    docs = [*BASE, *from_yaml(_POD_YAML)]
    old, new = _connect_contexts(joining, docs)
    assert scope_for(joining, Changes.between(old, new)) == FULL


_POD_YAML = """
apiVersion: v1
kind: Pod
metadata: {name: ratings-vm-1, namespace: default, labels: {app: ratings, version: v1}}
spec:
  serviceAccountName: bookinfo-ratings
  containers: [{name: app, ports: [{containerPort: 9080, name: http}]}]
status: {podIP: 10.1.0.40}
"""
