"""Clusters and load assignments: names, EDS, subsets, policies, ServiceEntries, inbound."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import health_check_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as hpo

from pilotfish.translate import CLUSTER_TYPE, ENDPOINT_TYPE, generate
from tests.unit.translate.fixtures import (
    FEATURES,
    bookinfo_push,
    pod,
    service,
    sidecar_node,
)

C = cluster_pb2.Cluster
R = "reviews.default.svc.cluster.local"


def _res(extra: list | None = None, node=None):  # type: ignore[no-untyped-def]
    return generate(node or sidecar_node(), bookinfo_push(extra))


def _addresses(cla) -> list[tuple[str, int]]:  # type: ignore[no-untyped-def]
    return [
        (e.endpoint.address.socket_address.address, e.endpoint.address.socket_address.port_value)
        for group in cla.endpoints
        for e in group.lb_endpoints
    ]


def test_cluster_names_per_subset_plus_default() -> None:
    res = _res()
    names = {n for n in res[CLUSTER_TYPE] if n.endswith(R)}
    assert names == {f"outbound|9080|{s}|{R}" for s in ("", "v1", "v2", "v3")}
    assert {
        "PassthroughCluster",
        "BlackHoleCluster",
        "InboundPassthroughCluster",
        "inbound|9080||",
    } <= set(res[CLUSTER_TYPE])


def test_eds_over_ads_with_subset_endpoints() -> None:
    res = _res()
    c = res[CLUSTER_TYPE][f"outbound|9080|v2|{R}"]
    assert c.type == C.EDS
    assert c.eds_cluster_config.eds_config.HasField("ads")
    assert c.eds_cluster_config.service_name == c.name
    assert c.connect_timeout.seconds == 10
    assert c.lb_policy == C.LEAST_REQUEST  # Istio's default
    assert _addresses(res[ENDPOINT_TYPE][c.name]) == [("10.1.0.13", 9080)]
    assert _addresses(res[ENDPOINT_TYPE][f"outbound|9080||{R}"]) == [
        ("10.1.0.12", 9080),
        ("10.1.0.13", 9080),
        ("10.1.0.14", 9080),
    ]
    opts = hpo.HttpProtocolOptions()
    c.typed_extension_protocol_options[
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    ].Unpack(opts)
    assert opts.explicit_http_config.HasField("http_protocol_options")


def test_unready_endpoints_are_left_out() -> None:
    not_ready = pod("reviews-v4-a", "10.1.0.30", {"app": "reviews", "version": "v4"})
    not_ready["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
    cla = _res([not_ready])[ENDPOINT_TYPE][f"outbound|9080||{R}"]
    health = {
        e.endpoint.address.socket_address.address: e.health_status
        for g in cla.endpoints
        for e in g.lb_endpoints
    }
    # Sent as UNHEALTHY they would count as hosts towards Envoy's panic threshold.
    assert "10.1.0.30" not in health
    assert health["10.1.0.12"] == health_check_pb2.HEALTHY


def test_destination_rule_policies_on_clusters() -> None:
    res = _res(FEATURES)
    ratings = "ratings.default.svc.cluster.local"
    top = res[CLUSTER_TYPE][f"outbound|9080||{ratings}"]
    assert top.lb_policy == C.ROUND_ROBIN
    t = top.circuit_breakers.thresholds[0]
    assert (t.max_connections.value, t.max_pending_requests.value) == (100, 10)
    assert (t.max_requests.value, t.max_retries.value) == (1000, 4)
    assert top.connect_timeout.seconds == 3
    ka = top.upstream_connection_options.tcp_keepalive
    assert (ka.keepalive_time.value, ka.keepalive_interval.value, ka.keepalive_probes.value) == (
        7200,
        75,
        9,
    )
    opts = hpo.HttpProtocolOptions()
    top.typed_extension_protocol_options[
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    ].Unpack(opts)
    assert opts.common_http_protocol_options.max_requests_per_connection.value == 5
    assert opts.common_http_protocol_options.idle_timeout.seconds == 30
    od = top.outlier_detection
    assert (od.consecutive_5xx.value, od.enforcing_consecutive_5xx.value) == (7, 100)
    assert (od.interval.seconds, od.base_ejection_time.seconds, od.max_ejection_percent.value) == (
        300,
        900,
        50,
    )
    assert top.common_lb_config.healthy_panic_threshold.value == 30
    v1 = res[CLUSTER_TYPE][f"outbound|9080|v1|{ratings}"]
    assert v1.lb_policy == C.RING_HASH  # subset override
    assert v1.circuit_breakers.thresholds[0].max_connections.value == 100  # inherited
    v2 = res[CLUSTER_TYPE][f"outbound|9080|v2|{ratings}"]
    assert v2.lb_policy == C.MAGLEV and v2.maglev_lb_config.table_size.value == 65537


def test_load_balancer_per_subset() -> None:
    res = _res(FEATURES)
    d = "details.default.svc.cluster.local"
    lb = {s: res[CLUSTER_TYPE][f"outbound|9080|{s}|{d}"] for s in ("", "v1", "v2", "qp", "pt")}
    assert lb[""].lb_policy == C.RING_HASH
    assert lb["v1"].lb_policy == C.RANDOM
    assert lb["v2"].lb_policy == C.LEAST_REQUEST
    assert (
        lb["qp"].lb_policy == C.RING_HASH
        and lb["qp"].ring_hash_lb_config.minimum_ring_size.value == 2048
    )
    assert lb["pt"].type == C.ORIGINAL_DST and lb["pt"].lb_policy == C.CLUSTER_PROVIDED
    assert f"outbound|9080|pt|{d}" not in res[ENDPOINT_TYPE]


def test_default_circuit_breakers_are_wide_open() -> None:
    t = _res()[CLUSTER_TYPE][f"outbound|9080||{R}"].circuit_breakers.thresholds[0]
    assert t.max_connections.value == t.max_requests.value == 4294967295


def test_service_entries() -> None:
    res = _res(FEATURES)
    ext = res[CLUSTER_TYPE]["outbound|80||httpbin.org"]
    assert ext.type == C.STRICT_DNS
    assert _addresses(ext.load_assignment) == [("httpbin.org", 80)]
    assert "outbound|80||httpbin.org" not in res[ENDPOINT_TYPE]
    wild = res[CLUSTER_TYPE]["outbound|443||*.wikipedia.org"]
    assert wild.type == C.ORIGINAL_DST and wild.lb_policy == C.CLUSTER_PROVIDED
    vm = res[ENDPOINT_TYPE]["outbound|8000||vm.internal.example"]
    assert _addresses(vm) == [("10.2.0.1", 8080), ("10.2.0.2", 9090)]


def test_tcp_clusters_have_no_http_options() -> None:
    c = _res(FEATURES)[CLUSTER_TYPE]["outbound|27017||mongo.default.svc.cluster.local"]
    assert not c.typed_extension_protocol_options


def test_grpc_ports_use_http2() -> None:
    extra = [service("grpcsvc", ports=[{"name": "grpc-api", "port": 7070}])]
    c = _res(extra)[CLUSTER_TYPE]["outbound|7070||grpcsvc.default.svc.cluster.local"]
    opts = hpo.HttpProtocolOptions()
    c.typed_extension_protocol_options[
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    ].Unpack(opts)
    assert opts.explicit_http_config.HasField("http2_protocol_options")


def test_inbound_and_passthrough_clusters() -> None:
    clusters = _res()[CLUSTER_TYPE]
    inbound = clusters["inbound|9080||"]
    assert inbound.type == C.STATIC
    assert _addresses(inbound.load_assignment) == [("127.0.0.1", 9080)]
    pt = clusters["PassthroughCluster"]
    assert pt.type == C.ORIGINAL_DST and pt.lb_policy == C.CLUSTER_PROVIDED
    ipt = clusters["InboundPassthroughCluster"]
    assert ipt.type == C.ORIGINAL_DST
    assert ipt.upstream_bind_config.source_address.address == "127.0.0.6"


def test_inbound_cluster_uses_target_port() -> None:
    extra = [service("productpage", ports=[{"name": "http", "port": 80, "targetPort": 9080}])]
    clusters = _res(extra)[CLUSTER_TYPE]
    assert "inbound|9080||" in clusters and "inbound|80||" not in clusters


def test_cluster_keys_make_and_read_istio_names() -> None:
    from pilotfish.translate import ClusterKey

    key = ClusterKey.outbound(9080, "v1", "reviews.default.svc.cluster.local")
    assert key.name == "outbound|9080|v1|reviews.default.svc.cluster.local"
    assert ClusterKey.parse(key.name) == key
    assert ClusterKey.inbound(9080).name == "inbound|9080||"
    assert ClusterKey.parse("inbound|9080||") == ClusterKey.inbound(9080)
    for other in ("PassthroughCluster", "outbound|x|v1|h", "sideways|1||h", "a|b|c"):
        assert ClusterKey.parse(other) is None
