"""Where the graph's response times come from: the recording rules Prometheus evaluates, the
query that reads what they record, and the buckets when the recorded ones do not cover every
edge."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest

from pilotfish.dashboard import graph
from pilotfish.dashboard.app import ResponseTimeSource
from tests.unit.dashboard.test_graph import call, row


def recorded(value: float, q: float, **labels: str) -> dict[str, Any]:
    metric = {k: v for k, v in labels.items() if k in graph.EDGE_LABELS}
    return row(value, **metric, quantile=str(q))


def test_one_rule_group_per_window_records_p50_p95_p99_under_the_name_the_graph_reads() -> None:
    rules = graph.recording_rules()
    groups = {g["name"]: g for g in rules["groups"]}
    assert len(groups) == len(graph.DURATIONS)
    for window in graph.DURATIONS:
        group = groups[f"pilotfish-graph-response-times-{window}"]
        assert group["interval"] == graph.RULE_INTERVALS[window]
        assert [r["labels"] for r in group["rules"]] == [
            {"quantile": "0.5"},
            {"quantile": "0.95"},
            {"quantile": "0.99"},
        ]
        for rule, q in zip(group["rules"], graph.QUANTILES, strict=True):
            # What the graph asks for is what the rules record.
            assert rule["record"] == graph.graph_queries(window).quantiles
            expr = rule["expr"]
            assert expr.startswith(f"histogram_quantile({q}, ")
            assert f"(rate(istio_request_duration_milliseconds_bucket[{window}]))" in expr
            by = re.search(r"sum by \(([^)]*)\)", expr)
            assert by is not None and by.group(1).split(", ") == ["le", *graph.EDGE_LABELS]
            assert expr.endswith(">= 0")  # no NaN for an edge idle in the window
    fast = graph.recording_rules({"5m": "1s"})
    assert [(g["name"], g["interval"]) for g in fast["groups"]] == [
        ("pilotfish-graph-response-times-5m", "1s")
    ]


def test_queries_read_the_recorded_series_and_every_bucket() -> None:
    q = graph.graph_queries("1h")
    assert q.quantiles == "edge:istio_request_duration_milliseconds:quantile_rate1h"
    # zero buckets too: histogram_quantile interpolates from the bucket below the rank
    assert not q.durations.rstrip().endswith("> 0")
    assert "istio_request_duration_milliseconds_bucket[1h]" in q.durations


def test_recorded_response_times_are_the_edges_p50_p95_p99() -> None:
    src = call("a-v1", "b-v1", reporter="source")
    dst = call("a-v1", "b-v1", reporter="destination")
    requests = [row(10.0, **src), row(10.0, **dst)]
    quantiles = [
        recorded(12.0, 0.5, **src),
        recorded(40.0, 0.95, **src),
        recorded(90.0, 0.99, **src),
        recorded(11.0, 0.5, **dst),
        recorded(float("nan"), 0.99, **dst),
        # an edge without requests in the window adds nothing
        recorded(5.0, 0.5, **call("c-v1", "d-v1", reporter="source")),
    ]
    g = graph.build_graph(requests, [], [], quantiles=quantiles)
    (edge,) = g["edges"]
    assert edge["reporter"] == "source"
    assert (edge["p50"], edge["p95"], edge["p99"]) == (12.0, 40.0, 90.0)
    assert {n["id"] for n in g["nodes"]} == {"workload:default:a-v1", "workload:default:b-v1"}
    # a caller without a sidecar: the server's recorded figures
    plain = call("unknown", "b-v1", source_workload="unknown", source_workload_namespace="")
    (edge,) = graph.build_graph(
        [row(1.0, **plain)], [], [], quantiles=[recorded(7.5, 0.5, **plain)]
    )["edges"]
    assert edge["source"] == "unknown" and edge["p50"] == 7.5 and edge["p99"] is None


def test_buckets_of_an_edge_without_requests_make_no_edge() -> None:
    idle = call("c-v1", "d-v1", reporter="source")
    durations = [row(0.0, **idle, le=le) for le in ("10", "+Inf")]
    assert graph.build_graph([], durations, [])["edges"] == []


def test_response_times_are_missing_when_an_edge_with_requests_has_no_recorded_ones() -> None:
    ab = call("a-v1", "b-v1", reporter="source")
    ab_500 = call("a-v1", "b-v1", reporter="source", response_code="500")
    ab_server = call("a-v1", "b-v1")
    requests = [row(1.0, **ab), row(1.0, **ab_500), row(1.0, **ab_server)]
    both = [recorded(1.0, q, **labels) for labels in (ab, ab_server) for q in graph.QUANTILES]
    assert not graph.response_times_missing(requests, both)  # codes are not edge labels
    client_only = [recorded(1.0, q, **ab) for q in graph.QUANTILES]
    assert graph.response_times_missing(requests, client_only)
    assert graph.response_times_missing(requests, [])
    assert not graph.response_times_missing([], [])


def test_response_times_are_missing_while_an_edges_p99_is_not_recorded_yet() -> None:
    # Prometheus stores each rule's result as it goes: a query during the group's first
    # evaluation over a new edge sees its p50 and p95 but not yet its p99.
    ab = call("a-v1", "b-v1", reporter="source")
    requests = [row(1.0, **ab)]
    partial = [recorded(1.0, q, **ab) for q in (0.5, 0.95)]
    assert graph.response_times_missing(requests, partial)
    assert graph.response_times_missing(requests, [*partial, recorded(math.inf, 0.99, **ab)])
    assert not graph.response_times_missing(requests, [*partial, recorded(3.0, 0.99, **ab)])


def test_a_prometheus_without_the_rules_is_asked_again_after_a_while() -> None:
    now = [100.0]
    source = ResponseTimeSource(retry_after=60.0, clock=lambda: now[0])
    assert source.worth_asking("5m")
    source.answered("5m", requests=False, recorded=False)  # no traffic: nothing learnt
    assert source.worth_asking("5m")
    source.answered("5m", requests=True, recorded=False)
    assert not source.worth_asking("5m") and source.worth_asking("1m")
    now[0] += 59.0
    assert not source.worth_asking("5m")
    now[0] += 1.0
    assert source.worth_asking("5m")
    source.answered("5m", requests=True, recorded=True)
    assert source.worth_asking("5m")


def test_computed_response_times_match_prometheus_with_every_bucket() -> None:
    # 0.5 and 1 ms buckets empty: Prometheus interpolates from 1 ms, not from 0
    buckets = {0.5: 0.0, 1.0: 0.0, 5.0: 10.0, 10.0: 20.0, math.inf: 20.0}
    assert graph.histogram_quantile(0.25, buckets) == pytest.approx(3.0)
