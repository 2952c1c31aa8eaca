"""Locality load balancing: priorities and weights relative to the calling proxy's locality."""

from __future__ import annotations

from typing import Any

from pilotfish.api.typeurls import CLUSTER_TYPE, ENDPOINT_TYPE, ROUTE_TYPE
from pilotfish.api.workloads import locality_from_labels
from pilotfish.translate.generator import generate
from pilotfish.translate.locality import lb_priority, parse_locality
from tests.unit.translate.fixtures import (
    from_yaml,
    pod,
    push_for,
    service,
    sidecar_node,
)

CLUSTER = "outbound|5000||helloworld.default.svc.cluster.local"


def topo(region: str, zone: str, subzone: str = "") -> dict[str, str]:
    labels = {
        "app": "helloworld",
        "topology.kubernetes.io/region": region,
        "topology.kubernetes.io/zone": zone,
    }
    if subzone:
        labels["topology.istio.io/subzone"] = subzone
    return labels


BACKENDS = [
    service("helloworld", ports=[{"name": "http", "port": 5000}]),
    pod("hw-r1z1", "10.2.0.1", topo("region1", "zone1")),
    pod("hw-r1z2", "10.2.0.2", topo("region1", "zone2")),
    pod("hw-r2z1", "10.2.0.3", topo("region2", "zone1")),
    pod("hw-r3z1", "10.2.0.4", topo("region3", "zone1")),
]


def rule(lb: str = "", outlier: bool = True) -> list[dict[str, Any]]:
    od = "\n    outlierDetection: {consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 1m}"
    text = f"""
kind: DestinationRule
metadata: {{name: helloworld}}
spec:
  host: helloworld
  trafficPolicy:{od if outlier else ""}
    loadBalancer:
      simple: ROUND_ROBIN{lb}
"""
    return from_yaml(text)


def groups(docs: list[dict[str, Any]], labels: dict[str, str] | None = None) -> dict[str, Any]:
    node = sidecar_node(
        "sleep", ip="10.2.0.9", labels=labels or {"app": "sleep", **topo("region1", "zone1")}
    )
    res = generate(node, push_for(BACKENDS + docs))
    cla = res[ENDPOINT_TYPE][CLUSTER]
    out = {}
    for g in cla.endpoints:
        for e in g.lb_endpoints:
            addr = e.endpoint.address.socket_address.address
            weight = g.load_balancing_weight.value if g.HasField("load_balancing_weight") else None
            out[addr] = (g.priority, weight)
    return out


def test_locality_comes_from_the_workload_labels() -> None:
    assert locality_from_labels(topo("r", "z", "s")) == "r/z/s"
    assert locality_from_labels(topo("r", "z")) == "r/z"
    assert locality_from_labels({"istio-locality": "r.z"}) == "r/z"
    assert locality_from_labels(topo("r", "z"), "x/y") == "x/y"
    assert locality_from_labels({}) == ""


def test_priorities_follow_istio() -> None:
    here = parse_locality("r1/z1/s1")
    assert lb_priority(here, parse_locality("r1/z1/s1")) == 0
    assert lb_priority(here, parse_locality("r1/z1/s2")) == 1
    assert lb_priority(here, parse_locality("r1/z2")) == 2
    assert lb_priority(here, parse_locality("r2/z1")) == 3


def test_failover_by_default_with_outlier_detection() -> None:
    # The mesh enables locality load balancing by default: local first, then the zone, then
    # the other regions (equal).
    assert groups(rule()) == {
        "10.2.0.1": (0, None),
        "10.2.0.2": (1, None),
        "10.2.0.3": (2, None),
        "10.2.0.4": (2, None),
    }


def test_without_outlier_detection_there_is_no_failover() -> None:
    assert {p for p, _ in groups(rule(outlier=False)).values()} == {0}


def test_failover_names_the_next_region() -> None:
    lb = """
      localityLbSetting:
        enabled: true
        failover: [{from: region1, to: region3}]"""
    assert groups(rule(lb)) == {
        "10.2.0.1": (0, None),
        "10.2.0.2": (1, None),
        "10.2.0.4": (2, None),  # region3, the named failover region
        "10.2.0.3": (3, None),
    }


def test_disabled_in_the_rule_or_the_mesh() -> None:
    lb = "\n      localityLbSetting: {enabled: false}"
    assert {p for p, _ in groups(rule(lb)).values()} == {0}
    mesh_off = from_yaml(
        """
apiVersion: install.istio.io/v1alpha1
kind: IstioOperator
metadata: {name: mesh, namespace: istio-system}
spec:
  meshConfig:
    localityLbSetting: {enabled: false}
"""
    )
    assert {p for p, _ in groups(rule() + mesh_off).values()} == {0}


def test_distribute_weights_localities() -> None:
    lb = """
      localityLbSetting:
        enabled: true
        distribute:
        - from: region1/zone1/*
          to: {"region1/zone1/*": 70, "region1/zone2/*": 20, "region3/*": 10}"""
    docs = rule(lb)
    assert groups(docs) == {
        "10.2.0.1": (0, 70),
        "10.2.0.2": (0, 20),
        "10.2.0.4": (0, 10),
    }  # region2 matches no `to`: its group is emptied
    res = generate(
        sidecar_node("sleep", labels={"app": "sleep", **topo("region1", "zone1")}),
        push_for(BACKENDS + docs),
    )
    assert res[CLUSTER_TYPE][CLUSTER].common_lb_config.HasField("locality_weighted_lb_config")
    # A proxy no `from` matches: every group, weighted by its size.
    other = groups(docs, {"app": "sleep", **topo("region2", "zone1")})
    assert other == {a: (0, 1) for a in ("10.2.0.1", "10.2.0.2", "10.2.0.3", "10.2.0.4")}


def test_failover_priority_by_labels() -> None:
    lb = """
      localityLbSetting:
        enabled: true
        failoverPriority: [topology.kubernetes.io/region, topology.kubernetes.io/zone]"""
    assert groups(rule(lb), {"app": "sleep", **topo("region1", "zone2")}) == {
        "10.2.0.2": (0, None),  # region and zone match
        "10.2.0.1": (1, None),  # region only
        "10.2.0.3": (2, None),
        "10.2.0.4": (2, None),
    }


def test_retry_remote_localities() -> None:
    vs = from_yaml(
        """
kind: VirtualService
metadata: {name: helloworld}
spec:
  hosts: [helloworld]
  http:
  - route: [{destination: {host: helloworld}}]
    retries: {attempts: 2, retryOn: 5xx, retryRemoteLocalities: true}
"""
    )
    res = generate(sidecar_node("sleep"), push_for(BACKENDS + rule() + vs))
    rc = res[ROUTE_TYPE]["5000"]
    vh = next(v for v in rc.virtual_hosts if v.name.startswith("helloworld"))
    policy = vh.routes[0].route.retry_policy
    assert policy.retry_priority.name == "envoy.retry_priorities.previous_priorities"
