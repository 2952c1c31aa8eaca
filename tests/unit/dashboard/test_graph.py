"""The graph from Istio's standard metrics: nodes per graph type, edges, mTLS share, health."""

from __future__ import annotations

import math
from typing import Any

import pytest

from pilotfish.dashboard import graph


def row(value: float, **labels: str) -> dict[str, Any]:
    return {"metric": labels, "value": [0, str(value)]}


def call(src: str, dst: str, *, reporter: str = "destination", **extra: str) -> dict[str, str]:
    src_app, _, src_version = src.rpartition("-")
    dst_app, _, dst_version = dst.rpartition("-")
    return {
        "reporter": reporter,
        "source_workload_namespace": "default",
        "source_workload": src,
        "source_app": src_app,
        "source_version": src_version,
        "source_canonical_service": src_app,
        "destination_service_namespace": "default",
        "destination_service_name": dst_app,
        "destination_workload_namespace": "default",
        "destination_workload": dst,
        "destination_app": dst_app,
        "destination_version": dst_version,
        "request_protocol": "http",
        "response_code": "200",
        "response_flags": "-",
        "connection_security_policy": "mutual_tls" if reporter == "destination" else "unknown",
        **extra,
    }


def bookinfo_requests() -> list[dict[str, Any]]:
    out = []
    for src, dst in [
        ("productpage-v1", "details-v1"),
        ("productpage-v1", "reviews-v1"),
        ("productpage-v1", "reviews-v2"),
        ("reviews-v2", "ratings-v1"),
    ]:
        out.append(row(2.0, **call(src, dst)))
        out.append(row(2.0, **call(src, dst, reporter="source")))
    gw = call(
        "x-v1",
        "productpage-v1",
        source_workload="istio-ingressgateway",
        source_app="istio-ingressgateway",
        source_workload_namespace="istio-system",
    )
    out.append(row(5.0, **gw))
    return out


def test_workload_graph_has_every_workload_and_edge_with_the_ingress_gateway_as_root() -> None:
    g = graph.build_graph(bookinfo_requests(), [], [], graph_type="workload")
    ids = {n["id"] for n in g["nodes"]}
    assert ids == {
        "workload:istio-system:istio-ingressgateway",
        "workload:default:productpage-v1",
        "workload:default:details-v1",
        "workload:default:reviews-v1",
        "workload:default:reviews-v2",
        "workload:default:ratings-v1",
    }
    gw = next(n for n in g["nodes"] if n["isIngress"])
    assert gw["isRoot"] and gw["health"] == "healthy"
    edges = {(e["source"], e["target"]): e for e in g["edges"]}
    assert len(edges) == 5
    e = edges[("workload:default:reviews-v2", "workload:default:ratings-v1")]
    assert e["rate"] == 2.0 and e["reporter"] == "source"
    assert e["mtlsPct"] == 100.0  # from the server's connection_security_policy
    assert e["health"] == "healthy"


def test_app_and_versioned_app_and_service_graphs_group_nodes() -> None:
    rows = bookinfo_requests()
    app = graph.build_graph(rows, [], [], graph_type="app")
    assert "app:default:reviews" in {n["id"] for n in app["nodes"]}
    reviews = next(n for n in app["nodes"] if n["id"] == "app:default:reviews")
    assert reviews["workloads"] == ["reviews-v1", "reviews-v2"]
    versioned = graph.build_graph(rows, [], [], graph_type="versionedApp")
    labels = {n["label"] for n in versioned["nodes"]}
    assert {"reviews v1", "reviews v2"} <= labels
    svc = graph.build_graph(rows, [], [], graph_type="service")
    assert {n["id"] for n in svc["nodes"]} >= {"service:default:reviews", "service:default:ratings"}
    # reviews -> ratings is one service edge, whatever version called
    assert ("service:default:reviews", "service:default:ratings") in {
        (e["source"], e["target"]) for e in svc["edges"]
    }


def test_a_caller_without_sidecar_is_the_unknown_node_and_not_mtls() -> None:
    plain = call(
        "x-v1",
        "productpage-v1",
        source_workload="unknown",
        source_app="unknown",
        source_workload_namespace="unknown",
        connection_security_policy="none",
    )
    g = graph.build_graph([row(1.0, **plain)], [], [])
    (edge,) = g["edges"]
    assert edge["source"] == "unknown" and edge["mtlsPct"] == 0.0
    assert next(n for n in g["nodes"] if n["id"] == "unknown")["nodeType"] == "unknown"


def test_partial_mtls_share() -> None:
    rows = [
        row(3.0, **call("a-v1", "b-v1")),
        row(1.0, **call("a-v1", "b-v1", connection_security_policy="none")),
    ]
    (edge,) = graph.build_graph(rows, [], [])["edges"]
    assert edge["mtlsPct"] == 75.0


def test_passthrough_destination_is_its_own_node() -> None:
    out = call("a-v1", "x-v1", reporter="source", destination_service_name="PassthroughCluster",
               destination_workload="unknown", destination_app="unknown")  # fmt: skip
    g = graph.build_graph([row(1.0, **out)], [], [])
    assert {n["id"] for n in g["nodes"]} == {"workload:default:a-v1", "PassthroughCluster"}
    assert g["edges"][0]["mtlsPct"] is None  # no server reported: unknown, no lock


def test_a_fault_the_client_injects_turns_the_edge_red() -> None:
    """A 100% abort on ratings: only the client's sidecar sees the 503s (the server none)."""
    aborted = call("reviews-v2", "ratings-v1", reporter="source", response_code="503",
                   response_flags="FI")  # fmt: skip
    rows = [
        row(2.0, **aborted),
        row(0.5, **call("reviews-v2", "ratings-v1")),  # earlier successes the server saw
    ]
    g = graph.build_graph(rows, [], [])
    (edge,) = g["edges"]
    assert edge["health"] == "failure" and edge["pct5xx"] == 100.0
    assert edge["flags"] == {"FI": 2.0}
    ratings = next(n for n in g["nodes"] if n["id"] == "workload:default:ratings-v1")
    assert ratings["health"] == "failure"


@pytest.mark.parametrize(
    ("codes", "health"),
    [
        ({"200": 100.0}, "healthy"),
        ({"200": 99.0, "503": 1.0}, "degraded"),
        ({"200": 90.0, "500": 10.0}, "failure"),
        ({"200": 91.0, "404": 9.0}, "healthy"),
        ({"200": 90.0, "404": 10.0}, "degraded"),
        ({"200": 80.0, "404": 20.0}, "failure"),
    ],
)
def test_kialis_default_tolerances(codes: dict[str, float], health: str) -> None:
    rows = [row(r, **call("a-v1", "b-v1", response_code=c)) for c, r in codes.items()]
    (edge,) = graph.build_graph(rows, [], [])["edges"]
    assert edge["health"] == health


def test_response_times_interpolate_like_histogram_quantile() -> None:
    buckets = {10.0: 50.0, 25.0: 90.0, 100.0: 99.0, math.inf: 100.0}
    assert graph.histogram_quantile(0.5, buckets) == 10.0
    assert graph.histogram_quantile(0.9, buckets) == 25.0
    assert graph.histogram_quantile(0.7, buckets) == pytest.approx(17.5)
    assert graph.histogram_quantile(0.995, buckets) == 100.0  # in +Inf: the highest bound
    assert graph.histogram_quantile(0.5, {}) is None
    durations = [
        row(v, **call("a-v1", "b-v1", reporter="source"), le=str(le))
        for le, v in [("10", 50.0), ("25", 90.0), ("100", 99.0), ("+Inf", 100.0)]
    ]
    requests = [row(100.0, **call("a-v1", "b-v1", reporter="source"))]
    (edge,) = graph.build_graph(requests, durations, [])["edges"]
    assert edge["p50"] == 10.0 and edge["p99"] == 100.0
    assert edge["p95"] == pytest.approx(25 + 75 * 5 / 9, abs=0.01)


def test_tcp_edges_carry_bytes_per_second() -> None:
    labels = {k: v for k, v in call("a-v1", "db-v1").items() if k in graph.EDGE_LABELS}
    g = graph.build_graph([], [], [row(1234.5, **labels)])
    (edge,) = g["edges"]
    assert edge["protocol"] == "tcp" and edge["bytesPerSec"] == 1234.5
    assert edge["health"] == "healthy"


def test_namespace_filter_keeps_edges_touching_the_namespace() -> None:
    shop = {
        "source_workload_namespace": "shop",
        "destination_service_namespace": "shop",
        "destination_workload_namespace": "shop",
    }
    other = call("a-v1", "b-v1", **shop)
    rows = [*bookinfo_requests(), row(1.0, **other)]
    g = graph.build_graph(rows, [], [], namespaces=["shop"])
    assert {n["namespace"] for n in g["nodes"]} == {"shop"}
    assert len(graph.build_graph(rows, [], [], namespaces=["default"])["edges"]) == 5


def test_queries_use_the_window_and_refuse_unknown_ones() -> None:
    q = graph.graph_queries("1m")
    assert "istio_requests_total[1m]" in q.requests
    assert "connection_security_policy" in q.requests and "reporter" in q.requests
    assert "istio_request_duration_milliseconds_bucket[1m]" in q.durations
    assert ",le)" in q.durations
    assert "istio_tcp_sent_bytes_total[1m]" in q.tcp
    with pytest.raises(ValueError, match="duration"):
        graph.graph_queries("2d")
    with pytest.raises(ValueError, match="graphType"):
        graph.build_graph([], [], [], graph_type="nope")
