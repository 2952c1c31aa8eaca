"""The dashboard served by a real control plane, over a real Prometheus backfilled with
Istio's series for a Bookinfo-shaped mesh: sign-in, the graph API, the config and analyzer
messages, a wizard applied through the API, and `pilotfish dashboard` printing its link."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from pilotfish.dashboard import graph
from pilotfish.dashboard.graph import recording_rules
from pilotfish.testing.istio_series import (
    BackfilledPrometheus,
    SyntheticEdge,
    Workload,
    filled_prometheus,
)
from tests.integration.harness import ControlPlane

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("promtool") is None, reason="needs Debian's prometheus"),
]


def wl(name: str, namespace: str = "default", sidecar: bool = True) -> Workload:
    app, _, version = name.rpartition("-")
    return Workload(name, app, version, namespace, sidecar)


GATEWAY = Workload("istio-ingressgateway", "istio-ingressgateway", "unknown", "istio-system")
EDGES = [
    SyntheticEdge(GATEWAY, wl("productpage-v1"), 5.0, median_ms=40),
    SyntheticEdge(wl("productpage-v1"), wl("details-v1"), 5.0, median_ms=4),
    SyntheticEdge(wl("productpage-v1"), wl("reviews-v2"), 5.0, median_ms=20),
    SyntheticEdge(wl("reviews-v2"), wl("ratings-v1"), 5.0, error_ratio=0.5, median_ms=3),
    # a client without a sidecar, in plaintext (PERMISSIVE)
    SyntheticEdge(wl("sleep-v1", "legacy", sidecar=False), wl("productpage-v1"), 1.0, mtls=False),
]


@pytest.fixture
def prometheus(tmp_path: Path, free_port: Callable[[], int]) -> Iterator[BackfilledPrometheus]:
    prom = filled_prometheus(tmp_path / "prom", free_port(), EDGES)
    try:
        yield prom
    finally:
        prom.stop()


@pytest.fixture
def served(
    control_plane_factory: Callable[..., ControlPlane],
    prometheus: BackfilledPrometheus,
    free_port: Callable[[], int],
) -> tuple[ControlPlane, str]:
    port = free_port()
    cp = control_plane_factory(
        "--dashboard-listen", f"127.0.0.1:{port}", "--prometheus-url", prometheus.url
    )
    return cp, f"http://127.0.0.1:{port}"


@contextmanager
def signed_in(url: str, token: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, timeout=15) as client:
        resp = client.post("/login", data={"token": token})
        assert resp.status_code == 302, resp.text
        yield client


def test_every_data_call_needs_a_session_opened_by_the_token_or_a_one_time_link(
    served: tuple[ControlPlane, str],
) -> None:
    cp, url = served
    assert httpx.get(f"{url}/api/graph", timeout=5).status_code == 401
    assert httpx.get(f"{url}/api/config", timeout=5).status_code == 401
    assert httpx.post(f"{url}/login", data={"token": "wrong"}, timeout=5).status_code == 401
    page = httpx.get(f"{url}/", timeout=5)  # the app itself loads, then asks to sign in
    assert page.status_code == 200 and "/static/app.js" in page.text
    assert httpx.get(f"{url}/api/session", timeout=5).json() == {"signedIn": False}
    with signed_in(url, cp.token) as client:
        assert client.get("/api/session").json()["signedIn"] is True
    # `pilotfish dashboard` (no display) prints a one-time link, which works once.
    out = cp.cli("dashboard", "--browser=false", check=True).stdout
    link = next(w for w in out.split() if "/login/" in w)
    assert link.startswith(f"{url}/login/") and link.endswith("?page=graph")
    with httpx.Client(timeout=5) as browser:
        first = browser.get(link)
        assert first.status_code == 302 and first.headers["location"] == "/#graph"
        assert "HttpOnly" in first.headers["set-cookie"]
        assert browser.get(f"{url}/api/namespaces").status_code == 200
    assert httpx.get(link, timeout=5).status_code == 401  # used up
    prom = cp.cli("dashboard", "prometheus", "--browser=false", check=True).stdout
    assert prom.startswith("Prometheus: http://127.0.0.1:")


def test_the_graph_api_computes_kialis_graph_from_prometheus(
    served: tuple[ControlPlane, str],
) -> None:
    cp, url = served
    with signed_in(url, cp.token) as client:
        g = client.get("/api/graph", params={"graphType": "workload", "duration": "5m"}).json()
        nodes = {n["id"]: n for n in g["nodes"]}
        edges = {(e["source"], e["target"]): e for e in g["edges"]}
        gw = "workload:istio-system:istio-ingressgateway"
        pp, rv, ra = (
            f"workload:default:{n}" for n in ("productpage-v1", "reviews-v2", "ratings-v1")
        )
        assert nodes[gw]["isIngress"] and nodes[gw]["isRoot"]
        assert nodes["unknown"]["nodeType"] == "unknown"  # the caller without a sidecar
        assert set(edges) == {
            (gw, pp),
            (pp, "workload:default:details-v1"),
            (pp, rv),
            (rv, ra),
            ("unknown", pp),
        }
        assert edges[(pp, rv)]["mtlsPct"] == 100.0 and edges[("unknown", pp)]["mtlsPct"] == 0.0
        assert edges[(pp, rv)]["rate"] == pytest.approx(5.0, rel=0.05)
        # the series were drawn with a 20 ms median: p50 in its bucket, p99 above it
        assert 10 <= edges[(pp, rv)]["p50"] <= 25
        assert edges[(pp, rv)]["p50"] < edges[(pp, rv)]["p99"] <= 250
        assert edges[(rv, ra)]["health"] == "failure" and nodes[ra]["health"] == "failure"
        assert edges[(pp, rv)]["health"] == "healthy"
        # App graph of istio-system: the gateway and the one app it calls.
        params = {"graphType": "app", "namespaces": "istio-system"}
        app = client.get("/api/graph", params=params).json()
        assert {n["id"] for n in app["nodes"]} == {
            "workload:istio-system:istio-ingressgateway",
            "app:default:productpage",
        }
        assert client.get("/api/graph", params={"duration": "2d"}).status_code == 400
        rng = client.get(
            "/api/prometheus/query_range",
            params={"query": "sum(rate(istio_requests_total[1m]))", "start": str(int(
                g["timestamp"]) - 300), "end": str(int(g["timestamp"])), "step": "15"},
        ).json()  # fmt: skip
        assert rng["status"] == "success" and rng["data"]["result"][0]["values"]


def test_the_graph_reads_the_response_times_prometheus_records_and_computes_them_without(
    served: tuple[ControlPlane, str], prometheus: BackfilledPrometheus
) -> None:
    cp, url = served
    rules = recording_rules({"5m": "1s"})  # the mesh's rules, evaluated every second
    prometheus.load_rules(rules)
    prometheus.wait_for_rules([g["name"] for g in rules["groups"]])
    params = {"graphType": "workload", "duration": "5m"}

    def times(g: dict[str, Any]) -> dict[str, tuple[float, float, float]]:
        return {e["id"]: (e["p50"], e["p95"], e["p99"]) for e in g["edges"]}

    with signed_in(url, cp.token) as client:
        got = client.get("/api/graph", params=params).json()
        assert got["responseTimes"] == "recorded"
        recorded = times(got)
        assert len(recorded) == 5 and all(None not in t for t in recorded.values())
        prometheus.load_rules(None)  # a Prometheus without the rules: its series go stale
        deadline = time.monotonic() + 30
        while (got := client.get("/api/graph", params=params).json())["responseTimes"] != (
            "computed"
        ):
            assert time.monotonic() < deadline, got["responseTimes"]
            time.sleep(0.5)
        computed = times(got)
    # Prometheus' histogram_quantile and the graph's own agree, edge by edge.
    assert set(computed) == set(recorded)
    for edge, values in recorded.items():
        assert computed[edge] == pytest.approx(values, rel=1e-6), edge


def test_an_edge_with_only_some_quantiles_recorded_is_not_taken_for_recorded_response_times(
    served: tuple[ControlPlane, str], prometheus: BackfilledPrometheus
) -> None:
    """Prometheus stores each rule's result when that rule is done, not at the end of its
    group: a graph asked for during a group's first evaluation can find an edge's p50 and p95
    recorded but not yet its p99. Rules that record only p50 and p95 hold Prometheus in that
    state for as long as the test needs: such an answer must not pass for recorded response
    times, and the graph computes all three figures of every edge from the buckets."""
    cp, url = served
    rules = recording_rules({"5m": "1s"})
    group = rules["groups"][0]
    p99 = str(graph.QUANTILES[-1])
    group["rules"] = [r for r in group["rules"] if r["labels"]["quantile"] != p99]
    queries = graph.graph_queries("5m")

    def query(promql: str) -> list[dict[str, Any]]:
        body = httpx.get(f"{prometheus.url}/api/v1/query", params={"query": promql}, timeout=10)
        return list(body.json()["data"]["result"])

    prometheus.load_rules(rules)
    try:
        prometheus.wait_for_rules([group["name"]])
        requests, quantiles = query(queries.requests), query(queries.quantiles)
        recorded = {s["metric"]["quantile"] for s in quantiles}
        assert recorded == {str(q) for q in graph.QUANTILES[:-1]}, quantiles
        assert graph.response_times_missing(requests, quantiles)
        with signed_in(url, cp.token) as client:
            got = client.get("/api/graph", params={"graphType": "workload", "duration": "5m"})
        body = got.json()
        assert body["responseTimes"] == "computed"
        edges = body["edges"]
        assert len(edges) == 5 and all(
            e[p] is not None for e in edges for p in ("p50", "p95", "p99")
        ), edges
    finally:
        prometheus.load_rules(None)


def test_config_shows_analyzer_messages_and_a_wizard_applies_through_the_api(
    served: tuple[ControlPlane, str], tmp_path: Path
) -> None:
    cp, url = served
    bad = tmp_path / "vs.json"
    bad.write_text(json.dumps({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "ratings", "namespace": "default"},
        "spec": {"hosts": ["ratings"], "http": [{"route": [{"destination": {
            "host": "ratings", "subset": "v9"}}]}]},
    }))  # fmt: skip
    cp.cli("apply", "-f", str(bad), check=True)
    with signed_in(url, cp.token) as client:
        items = client.get("/api/config").json()["items"]
        vs = next(i for i in items if i["kind"] == "VirtualService" and i["name"] == "ratings")
        assert "IST0101" in {m["code"] for m in vs["messages"]}
        applies = client.get(
            "/api/config/for", params={"namespace": "default", "service": "ratings"}
        ).json()["items"]
        assert [(i["kind"], i["name"]) for i in applies] == [("VirtualService", "ratings")]
        spec = {"weights": {"v1": 90, "v2": 10}}
        body = {"service": "reviews", "namespace": "default", "spec": spec, "mode": "preview"}
        refused = client.post("/api/wizards/traffic-shifting", json=body)
        assert refused.status_code == 422  # no DestinationRule, no Deployment with versions
        assert "no DestinationRule defines subset v1, v2 of reviews" in refused.json()["error"]
        dr = tmp_path / "dr.yaml"
        dr.write_text(
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
            "metadata: {name: reviews, namespace: default}\n"
            "spec:\n  host: reviews\n  subsets:\n  - {name: v1, labels: {version: v1}}\n"
            "  - {name: v2, labels: {version: v2}}\n"
        )
        cp.cli("apply", "-f", str(dr), check=True)
        preview = client.post("/api/wizards/traffic-shifting", json=body).json()
        assert "weight: 90" in preview["yaml"] and "applied" not in preview
        assert cp.cli("get", "vs", "reviews").returncode != 0  # a preview stores nothing
        dry = client.post("/api/wizards/traffic-shifting", json={**body, "mode": "dryRun"})
        assert dry.json()["dryRun"]["ok"] and "applied" not in dry.json()
        assert cp.cli("get", "vs", "reviews").returncode != 0
        done = client.post("/api/wizards/traffic-shifting", json={**body, "mode": "apply"})
        assert done.status_code == 200 and done.json()["applied"]["ok"]
        stored = json.loads(cp.cli("get", "vs", "reviews", "-o", "json", check=True).stdout)
        route = stored["spec"]["http"][0]["route"]
        assert [(r["destination"]["subset"], r["weight"]) for r in route] == [
            ("v1", 90),
            ("v2", 10),
        ]
        form = client.post("/api/wizards/traffic-shifting", data={"x": "1"})
        assert form.status_code == 415  # JSON only: a cross-site form cannot post
