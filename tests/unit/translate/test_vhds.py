"""VHDS (mesh config ``virtualHostDiscovery``): a sidecar's outbound virtual hosts as resources
of their own, the route config holding ``vhds`` and the fallback only."""

from __future__ import annotations

import dataclasses
from typing import Any

from pilotfish.translate import ROUTE_TYPE, generate, generate_config
from pilotfish.translate.generator import VIRTUAL_HOST_TYPE
from pilotfish.translate.route_configs import PLACEHOLDER_HOST, merge_vhds
from tests.unit.translate.fixtures import (
    BOOKINFO_CORE,
    FEATURES,
    bookinfo_push,
    from_yaml,
    push_for,
    router_node,
    sidecar_node,
)

VHDS_ON: list[dict[str, Any]] = from_yaml(
    """
apiVersion: install.istio.io/v1alpha1
kind: IstioOperator
metadata: {name: vhds, namespace: istio-system}
spec: {meshConfig: {virtualHostDiscovery: true}}
"""
)
VHDS_OFF: list[dict[str, Any]] = from_yaml(
    """
apiVersion: install.istio.io/v1alpha1
kind: IstioOperator
metadata: {name: vhds, namespace: istio-system}
spec: {meshConfig: {virtualHostDiscovery: false}}
"""
)
REVIEWS = "9080/reviews.default.svc.cluster.local:9080"


def assert_same_but_name(a: Any, b: Any) -> None:
    a, b = type(a).FromString(a.SerializeToString()), type(b).FromString(b.SerializeToString())
    a.ClearField("name")
    b.ClearField("name")
    assert a == b


def test_route_config_carries_vhds_and_the_fallback_and_each_service_is_a_virtual_host() -> None:
    push = bookinfo_push(FEATURES + VHDS_ON)
    plain = generate(sidecar_node(), push)
    split = generate(sidecar_node(delta_xds=True), push)
    config = split[ROUTE_TYPE]["9080"]
    assert config.HasField("vhds") and config.vhds.config_source.HasField("ads")
    assert [v.name for v in config.virtual_hosts] == ["allow_any"]
    assert not config.validate_clusters.value
    vhosts = split[VIRTUAL_HOST_TYPE]
    # Named <route config>/<virtual host>, the resource and the virtual host it carries (Envoy
    # removes a virtual host by the removed resource's name), one per service virtual host of
    # the plain form.
    assert REVIEWS in vhosts and vhosts[REVIEWS].name == REVIEWS
    whole = plain[ROUTE_TYPE]["9080"]
    on_port = sorted(n for n in vhosts if n.startswith("9080/"))
    assert on_port == sorted(f"9080/{v.name}" for v in whole.virtual_hosts[:-1])
    for v in whole.virtual_hosts[:-1]:
        assert vhosts[f"9080/{v.name}"].name == f"9080/{v.name}"
        assert_same_but_name(vhosts[f"9080/{v.name}"], v)
    # Merged back, the route config has the same virtual hosts as the plain one.
    merged = merge_vhds(split[ROUTE_TYPE], vhosts)["9080"]
    assert [v.name.removeprefix("9080/") for v in merged.virtual_hosts] == [
        v.name for v in [whole.virtual_hosts[-1], *whole.virtual_hosts[:-1]]
    ]
    for v in merged.virtual_hosts[1:]:
        assert_same_but_name(
            v,
            whole.virtual_hosts[
                [w.name for w in whole.virtual_hosts].index(v.name.removeprefix("9080/"))
            ],
        )
    assert not plain[VIRTUAL_HOST_TYPE]


def test_a_virtual_service_change_changes_one_virtual_host_and_not_the_route_config() -> None:
    before = generate(sidecar_node(delta_xds=True), push_for(BOOKINFO_CORE + VHDS_ON))
    flip = from_yaml(
        """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews}, weight: 100}]}]
"""
    )
    after = generate(sidecar_node(delta_xds=True), push_for(BOOKINFO_CORE + flip + VHDS_ON))
    assert before[ROUTE_TYPE] == after[ROUTE_TYPE]
    differs = {
        n
        for n in before[VIRTUAL_HOST_TYPE].keys() | after[VIRTUAL_HOST_TYPE].keys()
        if before[VIRTUAL_HOST_TYPE].get(n) != after[VIRTUAL_HOST_TYPE].get(n)
    }
    assert differs == {REVIEWS}


def test_sidecar_without_capture_splits_its_one_route_config() -> None:
    push = bookinfo_push(FEATURES + VHDS_ON)
    node = sidecar_node(
        ip="127.0.0.1",
        interception_mode="NONE",
        outbound_port=15001,
        inbound_ports={9080: 15006},
    )
    plain = generate(node, push)[ROUTE_TYPE]["15001"]
    split = generate(dataclasses.replace(node, delta_xds=True), push)
    config = split[ROUTE_TYPE]["15001"]
    # ALLOW_ANY: no fallback (an unknown host has no route), so nothing stays inline.
    assert config.HasField("vhds") and not config.virtual_hosts
    assert sorted(split[VIRTUAL_HOST_TYPE]) == sorted(
        f"15001/{v.name}" for v in plain.virtual_hosts
    )
    assert "15001/reviews.default.svc.cluster.local:9080" in split[VIRTUAL_HOST_TYPE]


def test_plain_rds_where_vhds_does_not_apply() -> None:
    push = bookinfo_push(FEATURES + VHDS_ON)
    nodes = {
        "sotw": sidecar_node(),
        "router": router_node(gateway_ports={80: 8080}, delta_xds=True),
    }
    for what, node in nodes.items():
        res = generate(node, push)
        assert not res[VIRTUAL_HOST_TYPE], what
        assert not any(rc.HasField("vhds") for rc in res[ROUTE_TYPE].values()), what
    # ``virtualHostDiscovery: false`` opts a Delta sidecar out.
    res = generate(sidecar_node(delta_xds=True), bookinfo_push(FEATURES + VHDS_OFF))
    assert not res[VIRTUAL_HOST_TYPE] and not res[ROUTE_TYPE]["9080"].HasField("vhds")
    assert "reviews.default.svc.cluster.local:9080" in {
        v.name for v in res[ROUTE_TYPE]["9080"].virtual_hosts
    }


def test_vhds_is_the_default_for_delta_sidecars_only() -> None:
    push = bookinfo_push(FEATURES)  # no mesh config: the defaults
    delta = generate(sidecar_node(delta_xds=True), push)
    assert delta[ROUTE_TYPE]["9080"].HasField("vhds") and REVIEWS in delta[VIRTUAL_HOST_TYPE]
    for what, node in {
        "sotw": sidecar_node(),
        "router": router_node(gateway_ports={80: 8080}, delta_xds=True),
    }.items():
        res = generate(node, push)
        assert not res[VIRTUAL_HOST_TYPE], what
        assert not any(rc.HasField("vhds") for rc in res[ROUTE_TYPE].values()), what


ON_DEMAND: list[dict[str, Any]] = from_yaml(
    """
apiVersion: install.istio.io/v1alpha1
kind: IstioOperator
metadata: {name: on-demand, namespace: istio-system}
spec: {meshConfig: {onDemandClusters: true}}
"""
)


def test_on_demand_virtual_hosts_start_with_a_placeholder_and_resolve_hosts() -> None:
    push = bookinfo_push(FEATURES + ON_DEMAND)
    config = generate_config(sidecar_node(delta_xds=True), push)
    route = config.resources[ROUTE_TYPE]["9080"]
    # No inline virtual host: a ``*`` would take every host Envoy does not have yet.
    assert route.HasField("vhds") and not route.virtual_hosts
    vhosts = config.resources[VIRTUAL_HOST_TYPE]
    assert PLACEHOLDER_HOST in vhosts["9080/on-demand"].domains
    # Every service's virtual host is on demand, the placeholders (one per route config) not.
    placeholders = {f"{name}/on-demand" for name in config.resources[ROUTE_TYPE]}
    assert placeholders <= set(vhosts)
    assert config.on_demand_vhosts == set(vhosts) - placeholders
    assert REVIEWS in config.on_demand_vhosts
    directory = config.directory
    assert directory is not None
    for host in ("reviews", "reviews:9080", "reviews.default.svc.cluster.local:9080"):
        assert directory.resolve(f"9080/{host}").name == REVIEWS
    # A host no service has gets the fallback (ALLOW_ANY: passthrough), made for it alone.
    found = directory.resolve("9080/example.com")
    assert found.name == "9080/example.com" and found.vhost is not None
    assert list(found.vhost.domains) == ["example.com"]
    assert found.vhost.routes[0].route.cluster == "PassthroughCluster"
    # Off by default (VHDS alone keeps every virtual host eager).
    plain = generate_config(sidecar_node(delta_xds=True), bookinfo_push(FEATURES))
    assert plain.directory is None and not plain.on_demand_vhosts


def test_on_demand_virtual_hosts_without_capture_under_registry_only() -> None:
    node = sidecar_node(
        ip="127.0.0.1",
        interception_mode="NONE",
        outbound_port=15001,
        inbound_ports={9080: 15006},
        delta_xds=True,
    )
    allow = generate_config(node, bookinfo_push(FEATURES + ON_DEMAND)).directory
    assert allow is not None
    # ALLOW_ANY without capture has no fallback: an unknown host finds no route (404).
    assert allow.resolve("15001/example.com").name is None
    assert allow.resolve("15001/reviews:9080").name == "15001/" + REVIEWS.partition("/")[2]
    registry_only = from_yaml(
        """
apiVersion: install.istio.io/v1alpha1
kind: IstioOperator
metadata: {name: on-demand, namespace: istio-system}
spec: {meshConfig: {onDemandClusters: true, outboundTrafficPolicy: {mode: REGISTRY_ONLY}}}
"""
    )
    blocked = generate_config(node, bookinfo_push(FEATURES + registry_only)).directory
    assert blocked is not None
    found = blocked.resolve("15001/example.com")
    assert found.vhost is not None and found.vhost.routes[0].direct_response.status == 502
