"""The generator: consistent resource sets, shared work, scale."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2

from pilotfish.translate import CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, generate
from tests.unit.translate.fixtures import (
    FEATURES,
    GATEWAYS,
    bookinfo_push,
    pod,
    push_for,
    router_node,
    service,
    sidecar_node,
    unpack_hcm,
)


def _rds_names(res) -> set[str]:  # type: ignore[no-untyped-def]
    names = set()
    for lst in res[LISTENER_TYPE].values():
        for chain in [*lst.filter_chains, lst.default_filter_chain]:
            for f in chain.filters:
                if f.name == "envoy.filters.network.http_connection_manager":
                    hcm = unpack_hcm(chain)
                    if hcm.HasField("rds"):
                        names.add(hcm.rds.route_config_name)
    return names


def test_every_reference_is_served() -> None:
    push = bookinfo_push(FEATURES + GATEWAYS)
    nodes = [
        sidecar_node(),
        sidecar_node(
            ip="127.0.0.1",
            interception_mode="NONE",
            outbound_port=15001,
            inbound_ports={9080: 15006},
        ),
        router_node(gateway_ports={80: 8080}),
    ]
    for node in nodes:
        res = generate(node, push)
        assert _rds_names(res) == set(res[ROUTE_TYPE])
        for c in res[CLUSTER_TYPE].values():
            if c.type == cluster_pb2.Cluster.EDS:
                assert c.eds_cluster_config.service_name in res[ENDPOINT_TYPE]
        routed = {
            w.name if hasattr(w, "weight") else w
            for rc in res[ROUTE_TYPE].values()
            for v in rc.virtual_hosts
            for r in v.routes
            for w in (
                [r.route.cluster] if r.route.cluster else list(r.route.weighted_clusters.clusters)
            )
            if r.HasField("route")
        }
        assert routed <= set(res[CLUSTER_TYPE])


def test_generation_is_pure_and_shared_across_proxies() -> None:
    push = bookinfo_push()
    a = generate(sidecar_node(), push)
    b = generate(sidecar_node(app="details", ip="10.1.0.11"), push)
    name = "outbound|9080||reviews.default.svc.cluster.local"
    assert a[CLUSTER_TYPE][name] is b[CLUSTER_TYPE][name]
    assert a[ROUTE_TYPE]["9080"] is b[ROUTE_TYPE]["9080"]
    assert generate(sidecar_node(), push) == a


def test_five_hundred_services() -> None:
    docs = []
    for i in range(500):
        ns = f"ns{i % 10}"
        docs.append(
            service(
                f"svc{i}",
                ns,
                ports=[{"name": "http", "port": 8000 + i % 5}, {"name": "tcp", "port": 7000}],
            )
        )
        docs.append(pod(f"svc{i}-a", f"10.3.{i // 200}.{i % 200 + 1}", {"app": f"svc{i}"}, ns=ns))
        docs.append(
            {
                "kind": "DestinationRule",
                "metadata": {"name": f"svc{i}", "namespace": ns},
                "spec": {
                    "host": f"svc{i}",
                    "subsets": [{"name": "v1", "labels": {"version": "v1"}}],
                },
            }
        )
    push = push_for(docs)
    side = generate(sidecar_node(app="svc0", ns="ns0", ip="10.3.0.1", labels={"app": "svc0"}), push)
    # 2 ports x (default + v1) per service, 3 fixed clusters, 2 inbound (8000 and 7000)
    assert len(side[CLUSTER_TYPE]) == 500 * 2 * 2 + 3 + 2
    assert sorted(side[ROUTE_TYPE]) == ["8000", "8001", "8002", "8003", "8004"]
    assert sum(len(rc.virtual_hosts) for rc in side[ROUTE_TYPE].values()) == 500 + 5
    other = generate(
        sidecar_node(app="svc1", ns="ns1", ip="10.3.0.2", labels={"app": "svc1"}), push
    )
    name = "outbound|7000||svc5.ns5.svc.cluster.local"
    # A service whose DestinationRule resolves the same for both namespaces shares its cluster.
    assert side[CLUSTER_TYPE][name] is other[CLUSTER_TYPE][name]
    router = generate(router_node(), push)
    assert len(router[CLUSTER_TYPE]) == 500 * 2 * 2 + 2
