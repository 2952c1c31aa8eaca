"""DestinationRule policies: merge order, load balancers, consistent hash variants."""

from __future__ import annotations

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2, proxy_protocol_pb2
from envoy.extensions.transport_sockets.proxy_protocol.v3 import upstream_proxy_protocol_pb2 as upp
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

from pilotfish.api.destinationrule import TrafficPolicy
from pilotfish.translate.tls import RAW_SOCKET, TLS_SOCKET, socket_matches_auto, tls_socket
from pilotfish.translate.trafficpolicy import (
    PROXY_PROTOCOL_SOCKET,
    Policy,
    apply_load_balancer,
    apply_proxy_protocol,
    effective_policy,
    route_hash_policies,
)
from tests.unit.translate.fixtures import bookinfo_push, from_yaml

C = cluster_pb2.Cluster


def policy(spec: dict) -> Policy:  # type: ignore[type-arg]
    """The typed policy of a ``trafficPolicy`` written as in YAML."""
    return Policy.of(TrafficPolicy.model_validate(spec))


@pytest.mark.parametrize(
    ("simple", "expected"),
    [
        ("ROUND_ROBIN", C.ROUND_ROBIN),
        ("LEAST_CONN", C.LEAST_REQUEST),
        ("LEAST_REQUEST", C.LEAST_REQUEST),
        ("RANDOM", C.RANDOM),
        ("UNSPECIFIED", C.LEAST_REQUEST),
    ],
)
def test_simple_load_balancers(simple: str, expected: int) -> None:
    c = C(type=C.EDS)
    apply_load_balancer(c, policy({"loadBalancer": {"simple": simple}}))
    assert c.lb_policy == expected and c.type == C.EDS


def test_passthrough_is_original_dst() -> None:
    c = C(type=C.EDS)
    c.eds_cluster_config.service_name = "x"
    apply_load_balancer(c, policy({"loadBalancer": {"simple": "PASSTHROUGH"}}))
    assert c.type == C.ORIGINAL_DST and c.lb_policy == C.CLUSTER_PROVIDED
    assert not c.HasField("eds_cluster_config")


def test_consistent_hash_ring_and_maglev() -> None:
    ring = C()
    apply_load_balancer(ring, policy({"loadBalancer": {"consistentHash": {"useSourceIp": True}}}))
    assert (
        ring.lb_policy == C.RING_HASH and ring.ring_hash_lb_config.minimum_ring_size.value == 1024
    )
    sized = C()
    apply_load_balancer(
        sized,
        policy(
            {
                "loadBalancer": {
                    "consistentHash": {"httpHeaderName": "x", "ringHash": {"minimumRingSize": 64}}
                }
            }
        ),
    )
    assert sized.ring_hash_lb_config.minimum_ring_size.value == 64
    mag = C()
    apply_load_balancer(
        mag,
        policy(
            {
                "loadBalancer": {
                    "consistentHash": {"useSourceIp": True, "maglev": {"tableSize": 251}}
                }
            }
        ),
    )
    assert mag.lb_policy == C.MAGLEV and mag.maglev_lb_config.table_size.value == 251


def test_route_hash_policy_variants() -> None:
    def one(ch: dict) -> object:
        (h,) = route_hash_policies(policy({"loadBalancer": {"consistentHash": ch}}))
        return h

    assert one({"httpHeaderName": "x-user"}).header.header_name == "x-user"  # type: ignore[attr-defined]
    cookie = one({"httpCookie": {"name": "s", "path": "/", "ttl": "10s"}}).cookie  # type: ignore[attr-defined]
    assert (cookie.name, cookie.path, cookie.ttl.seconds) == ("s", "/", 10)
    assert list(cookie.attributes) == []
    attrs = [{"name": "SameSite", "value": "Strict"}, {"name": "Secure"}]
    cookie = one({"httpCookie": {"name": "s", "ttl": "10s", "attributes": attrs}}).cookie  # type: ignore[attr-defined]
    assert [(a.name, a.value) for a in cookie.attributes] == [
        ("SameSite", "Strict"),
        ("Secure", ""),
    ]
    assert one({"useSourceIp": True}).connection_properties.source_ip  # type: ignore[attr-defined]
    assert one({"httpQueryParameterName": "u"}).query_parameter.name == "u"  # type: ignore[attr-defined]
    assert route_hash_policies(policy({"loadBalancer": {"simple": "RANDOM"}})) == []


def test_effective_policy_merges_port_and_subset_settings() -> None:
    (dr_doc,) = from_yaml(
        """
kind: DestinationRule
metadata: {name: r, namespace: default}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    outlierDetection: {consecutive5xxErrors: 1}
    portLevelSettings:
    - port: {number: 9080}
      loadBalancer: {simple: RANDOM}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      connectionPool: {tcp: {maxConnections: 3}}
  - name: v2
    labels: {version: v2}
    trafficPolicy: {loadBalancer: {simple: LEAST_REQUEST}}
"""
    )
    push = bookinfo_push([dr_doc])
    dr = push.destination_rule("default", "reviews.default.svc.cluster.local")

    def written(p: Policy) -> dict:  # type: ignore[type-arg]
        return {k: v.to_dict() for k, v in p._asdict().items() if v is not None}

    assert written(effective_policy(dr, "", 1)) == {
        "load_balancer": {"simple": "ROUND_ROBIN"},
        "outlier_detection": {"consecutive5xxErrors": 1},
    }
    assert written(effective_policy(dr, "", 9080)) == {
        "load_balancer": {"simple": "RANDOM"},
        "outlier_detection": {"consecutive5xxErrors": 1},
    }
    assert written(effective_policy(dr, "v1", 9080)) == {
        "load_balancer": {"simple": "RANDOM"},
        "connection_pool": {"tcp": {"maxConnections": 3}},
        "outlier_detection": {"consecutive5xxErrors": 1},
    }
    assert written(effective_policy(dr, "v2", 9080)) == {
        "load_balancer": {"simple": "LEAST_REQUEST"},
        "outlier_detection": {"consecutive5xxErrors": 1},
    }


def test_empty_policy_messages_count_as_not_written() -> None:
    (dr_doc,) = from_yaml(
        """
kind: DestinationRule
metadata: {name: r, namespace: default}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    outlierDetection: {consecutive5xxErrors: 3}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      loadBalancer: {consistentHash: {}}
      outlierDetection: {}
"""
    )
    from pilotfish.translate import CLUSTER_TYPE, generate
    from tests.unit.translate.fixtures import sidecar_node

    clusters = generate(sidecar_node(), bookinfo_push([dr_doc]))[CLUSTER_TYPE]
    v1 = clusters["outbound|9080|v1|reviews.default.svc.cluster.local"]
    # The subset's settings replace the top level's, and empty ones are no settings.
    assert v1.lb_policy == C.LEAST_REQUEST
    assert not v1.HasField("outlier_detection")
    top = clusters["outbound|9080||reviews.default.svc.cluster.local"]
    assert top.lb_policy == C.ROUND_ROBIN and top.outlier_detection.consecutive_5xx.value == 3


def test_warmup_is_envoys_slow_start_as_istio_sets_it() -> None:
    c = C(type=C.EDS)
    lb = {"simple": "ROUND_ROBIN", "warmup": {"duration": "30s", "minimumPercent": 25}}
    apply_load_balancer(
        c, policy({"loadBalancer": {**lb, "warmup": {**lb["warmup"], "aggression": 2}}})
    )
    slow = c.round_robin_lb_config.slow_start_config
    assert slow.slow_start_window.seconds == 30
    assert (slow.aggression.default_value, slow.min_weight_percent.value) == (2.0, 25.0)
    c = C(type=C.EDS)
    apply_load_balancer(c, policy({"loadBalancer": {"warmup": {"duration": "10s"}}}))
    slow = c.least_request_lb_config.slow_start_config
    # Istio's defaults: linear ramp (aggression 1) from Envoy's 10 %.
    assert (slow.aggression.default_value, slow.min_weight_percent.value) == (1.0, 10.0)
    assert slow.aggression.runtime_key


def test_retry_budget_is_on_the_circuit_breaker_thresholds() -> None:
    from envoy.config.core.v3 import protocol_pb2

    from pilotfish.translate.trafficpolicy import apply_connection_pool

    c = C()
    apply_connection_pool(
        c,
        policy({"retryBudget": {"percent": 30, "minRetryConcurrency": 5}}),
        protocol_pb2.HttpProtocolOptions(),
    )
    budget = c.circuit_breakers.thresholds[0].retry_budget
    assert (budget.budget_percent.value, budget.min_retry_concurrency.value) == (30.0, 5)
    c = C()
    apply_connection_pool(c, policy({"retryBudget": {}}), protocol_pb2.HttpProtocolOptions())
    budget = c.circuit_breakers.thresholds[0].retry_budget
    assert (budget.budget_percent.value, budget.min_retry_concurrency.value) == (20.0, 3)
    c = C()
    apply_connection_pool(c, policy({}), protocol_pb2.HttpProtocolOptions())
    assert not c.circuit_breakers.thresholds[0].HasField("retry_budget")


def _wrapped(socket: base_pb2.TransportSocket) -> upp.ProxyProtocolUpstreamTransport:
    assert socket.name == PROXY_PROTOCOL_SOCKET
    out = upp.ProxyProtocolUpstreamTransport()
    socket.typed_config.Unpack(out)
    return out


def test_proxy_protocol_wraps_every_transport_socket_of_the_cluster() -> None:
    plain = C()
    apply_proxy_protocol(plain, policy({"proxyProtocol": {}}))
    inner = _wrapped(plain.transport_socket)
    assert inner.config.version == proxy_protocol_pb2.ProxyProtocolConfig.V1
    assert inner.transport_socket.name == RAW_SOCKET
    auto = C()
    auto.transport_socket_matches.extend(
        socket_matches_auto(tls_socket(tls_pb2.UpstreamTlsContext(sni="s")))
    )
    apply_proxy_protocol(auto, policy({"proxyProtocol": {"version": "V2"}}))
    mesh, rest = (_wrapped(m.transport_socket) for m in auto.transport_socket_matches)
    assert mesh.config.version == proxy_protocol_pb2.ProxyProtocolConfig.V2
    assert mesh.transport_socket.name == TLS_SOCKET and rest.transport_socket.name == RAW_SOCKET
    assert _wrapped(auto.transport_socket).transport_socket.name == RAW_SOCKET
    untouched = C()
    apply_proxy_protocol(untouched, policy({}))
    assert not untouched.HasField("transport_socket")
