"""Sidecar listeners and route configs in REDIRECT and NONE modes."""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2

from pilotfish.model import MeshSettings
from pilotfish.translate import LISTENER_TYPE, ROUTE_TYPE, generate
from tests.unit.translate.fixtures import (
    BOOKINFO_CORE,
    BOOKINFO_NETWORKING,
    FEATURES,
    bookinfo_push,
    listener,
    push_for,
    route_config,
    service,
    sidecar_node,
    unpack_hcm,
    unpack_tcp,
    vhost,
)

R = "reviews.default.svc.cluster.local"


def test_virtual_outbound() -> None:
    push = bookinfo_push(FEATURES)
    res = generate(sidecar_node(), push)
    lst = listener(res, "virtualOutbound")
    addr = lst.address.socket_address
    assert (addr.address, addr.port_value) == ("0.0.0.0", 15001)
    # The TLS inspector for the features' wildcard entry, whose TLS port is matched by SNI.
    assert [f.name for f in lst.listener_filters] == [
        "envoy.filters.listener.original_dst",
        "envoy.filters.listener.tls_inspector",
    ]
    by_name = {c.name: c for c in lst.filter_chains}
    http = by_name["0.0.0.0_9080"]
    assert http.filter_chain_match.destination_port.value == 9080
    assert unpack_hcm(http).rds.route_config_name == "9080"
    assert unpack_hcm(http).rds.config_source.HasField("ads")
    vip = push.service("mongo.default.svc.cluster.local").vip  # type: ignore[union-attr]
    tcp = by_name[f"{vip}_27017"]
    cidr = tcp.filter_chain_match.prefix_ranges[0]
    assert (cidr.address_prefix, cidr.prefix_len.value) == (vip, 32)
    weights = [(c.name, c.weight) for c in unpack_tcp(tcp).weighted_clusters.clusters]
    assert weights == [
        ("outbound|27017||mongo.default.svc.cluster.local", 80),
        ("outbound|27017||mongo-canary.default.svc.cluster.local", 20),
    ]
    assert unpack_tcp(lst.default_filter_chain).cluster == "PassthroughCluster"
    assert lst.traffic_direction == base_pb2.OUTBOUND


def test_route_config_per_port_with_istio_domains() -> None:
    push = bookinfo_push()
    rc = route_config(generate(sidecar_node(), push), "9080")
    vip = push.service(R).vip  # type: ignore[union-attr]
    reviews = vhost(rc, f"{R}:9080")
    expected = [R, "reviews", "reviews.default", "reviews.default.svc", vip]
    assert list(reviews.domains) == [d for n in expected for d in (n, f"{n}:9080")]
    allow_any = rc.virtual_hosts[-1]
    assert (allow_any.name, list(allow_any.domains)) == ("allow_any", ["*"])
    assert allow_any.routes[0].route.cluster == "PassthroughCluster"


def test_short_name_only_in_the_same_namespace() -> None:
    push = push_for([*BOOKINFO_CORE, service("other", ns="elsewhere")])
    rc = route_config(generate(sidecar_node(), push), "9080")
    domains = list(vhost(rc, "other.elsewhere.svc.cluster.local:9080").domains)
    assert "other" not in domains and "other:9080" not in domains
    assert "other.elsewhere" in domains


def test_registry_only_blocks_unknown_destinations() -> None:
    push = push_for(BOOKINFO_CORE, MeshSettings(outbound_traffic_policy="REGISTRY_ONLY"))
    res = generate(sidecar_node(), push)
    assert (
        unpack_tcp(listener(res, "virtualOutbound").default_filter_chain).cluster
        == "BlackHoleCluster"
    )
    last = route_config(res, "9080").virtual_hosts[-1]
    assert last.name == "block_all" and last.routes[0].direct_response.status == 502


def test_virtual_inbound() -> None:
    extra = [
        service(
            "productpage", ports=[{"name": "http", "port": 9080}, {"name": "tcp-raw", "port": 7000}]
        )
    ]
    res = generate(sidecar_node(), push_for(BOOKINFO_CORE + extra))
    lst = listener(res, "virtualInbound")
    assert lst.address.socket_address.port_value == 15006
    assert [f.name for f in lst.listener_filters] == ["envoy.filters.listener.original_dst"]
    chains = {c.filter_chain_match.destination_port.value: c for c in lst.filter_chains}
    assert sorted(chains) == [7000, 9080]
    hcm = unpack_hcm(chains[9080])
    route = hcm.route_config.virtual_hosts[0].routes[0]
    assert route.route.cluster == "inbound|9080||"
    assert unpack_tcp(chains[7000]).cluster == "inbound|7000||"
    assert unpack_tcp(lst.default_filter_chain).cluster == "InboundPassthroughCluster"


def test_explicit_mode_listeners_and_single_route_config() -> None:
    extra = [
        service(
            "multi",
            ports=[
                {"name": "http-a", "port": 8001},
                {"name": "http-b", "port": 8002},
                {"name": "tcp", "port": 5432},
            ],
        )
    ]
    push = push_for(BOOKINFO_CORE + BOOKINFO_NETWORKING + extra)
    node = sidecar_node(
        ip="127.0.0.2", interception_mode="NONE", outbound_port=15101, inbound_ports={9080: 15102}
    )
    res = generate(node, push)
    assert set(res[LISTENER_TYPE]) == {"127.0.0.1_15101", "127.0.0.2_15102"}
    out = listener(res, "127.0.0.1_15101")
    assert (out.address.socket_address.address, out.address.socket_address.port_value) == (
        "127.0.0.1",
        15101,
    )
    assert unpack_hcm(out.filter_chains[0]).rds.route_config_name == "15101"
    assert set(res[ROUTE_TYPE]) == {"15101"}
    rc = route_config(res, "15101")
    a = list(vhost(rc, "multi.default.svc.cluster.local:8001").domains)
    b = list(vhost(rc, "multi.default.svc.cluster.local:8002").domains)
    assert "multi" in a and "multi:8001" in a
    assert "multi" not in b and "multi:8002" in b
    assert not any(v.name.endswith(":5432") for v in rc.virtual_hosts)
    # VirtualService routes apply here too.
    reviews = vhost(rc, f"{R}:9080")
    assert reviews.routes[0].route.cluster == f"outbound|9080|v2|{R}"
    inbound = listener(res, "127.0.0.2_15102")
    assert (inbound.address.socket_address.address, inbound.address.socket_address.port_value) == (
        "127.0.0.2",
        15102,
    )
    route = unpack_hcm(inbound.filter_chains[0]).route_config.virtual_hosts[0].routes[0]
    assert route.route.cluster == "inbound|9080||"
    domains = [d for v in rc.virtual_hosts for d in v.domains]
    assert len(domains) == len(set(domains))  # Envoy rejects duplicate domains


def test_tcp_source_labels_give_each_workload_its_own_listener() -> None:
    from tests.unit.translate.fixtures import from_yaml

    docs = from_yaml(
        """
kind: VirtualService
metadata: {name: mongo, namespace: default}
spec:
  hosts: [mongo]
  tcp:
  - match: [{sourceLabels: {app: reviews}}]
    route: [{destination: {host: mongo-canary, port: {number: 27017}}}]
  - route: [{destination: {host: mongo, port: {number: 27017}}}]
"""
    )
    push = bookinfo_push(FEATURES + docs)
    vip = push.service("mongo.default.svc.cluster.local").vip  # type: ignore[union-attr]

    def target(node) -> str:  # type: ignore[no-untyped-def]
        lst = listener(generate(node, push), "virtualOutbound")
        chain = next(c for c in lst.filter_chains if c.name == f"{vip}_27017")
        return str(unpack_tcp(chain).cluster)

    reviews = sidecar_node(
        app="reviews", ip="10.1.0.13", labels={"app": "reviews", "version": "v2"}
    )
    assert target(reviews) == "outbound|27017||mongo-canary.default.svc.cluster.local"
    assert target(sidecar_node()) == "outbound|27017||mongo.default.svc.cluster.local"
