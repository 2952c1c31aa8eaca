"""The dashboard's graph at Kiali's pain point: 100 workloads and 300 edges.

Run from the repository root::

    .venv/bin/python bench/dashboard.py            # 100 workloads, 300 edges, 15 rounds
    .venv/bin/python bench/dashboard.py --quick    # 5 rounds

A real Prometheus (Debian's) is filled with Istio's standard series for a mesh of that shape
(both reporters, response codes, mutual TLS, duration buckets, 10 minutes every 15 s), written
as OpenMetrics and backfilled with ``promtool tsdb create-blocks-from openmetrics``: no sidecar
runs. The real control plane (``pilotfish server``) serves the dashboard over it. Measured side
by side in one run, the edges' response times coming from each of their two sources:

- **recorded**: Prometheus loads the graph's recording rules (as the local mesh's does) and
  evaluates them over the backfilled series; the graph reads the recorded p50/p95/p99. What
  Prometheus pays to evaluate the rules is printed too (each group's first evaluation);
- **computed**: the rules dropped (a Prometheus without them): the graph reads every duration
  bucket and interpolates the quantiles itself.

For each: **PromQL alone** (the graph's instant queries sent to Prometheus directly,
concurrently: what any graph built on these metrics pays) and the **graph API**
(``GET /api/graph``: the same queries plus building nodes, edges, health and p50/p95/p99),
target <= 200 ms. Then the **render** in Debian's Chromium (Playwright), from the graph's JSON
in hand to nodes, edges, layout (dagre), lock badges and the list view drawn, target <= 1 s;
and the whole refresh (fetch + render) as a user sees it.

Medians and the worst of ``--rounds`` rounds; no exit code depends on the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path

# Run as a script (``python bench/dashboard.py``): the helpers live next to it.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
from benchlib import (
    CLI,
    Processes,
    free_port,
    machine,
    median,
    ratio,
    table,
    wait_until,
)

from pilotfish.dashboard.graph import RULE_INTERVALS, graph_queries, recording_rules
from pilotfish.testing.istio_series import SyntheticEdge, Workload, filled_prometheus

TARGET_API_MS = 200.0
TARGET_RENDER_MS = 1000.0


def mesh_shape(workloads: int, edges: int, seed: int = 7) -> list[SyntheticEdge]:
    """``workloads`` workloads in 4 namespaces, called in layers (an ingress gateway in front),
    with ``edges`` distinct caller -> callee pairs; a few edges fail or are plaintext."""
    rng = random.Random(seed)
    nodes = [
        Workload(f"svc{i:03d}-v{1 + i % 3}", f"svc{i:03d}", f"v{1 + i % 3}", f"ns{i % 4}")
        for i in range(workloads)
    ]
    gateway = Workload("istio-ingressgateway", "istio-ingressgateway", "unknown", "istio-system")
    pairs: set[tuple[int, int]] = set()
    out = [SyntheticEdge(gateway, nodes[i], 20.0) for i in range(5)]
    while len(out) < edges:
        a = rng.randrange(workloads - 1)
        b = rng.randrange(a + 1, min(workloads, a + 25))
        if (a, b) in pairs:
            continue
        pairs.add((a, b))
        out.append(
            SyntheticEdge(
                nodes[a],
                nodes[b],
                rps=round(rng.uniform(0.5, 30), 2),
                error_ratio=0.2 if rng.random() < 0.05 else 0.0,
                mtls=rng.random() > 0.1,
                median_ms=rng.choice((2, 5, 10, 20, 40, 80)),
            )
        )
    return out


async def promql_alone(url: str, source: str) -> float:
    q = graph_queries("5m")
    times = q.quantiles if source == "recorded" else q.durations
    async with httpx.AsyncClient(timeout=30) as client:
        start = time.perf_counter()
        answers = await asyncio.gather(
            *(
                client.get(f"{url}/api/v1/query", params={"query": query})
                for query in (q.requests, q.tcp, times)
            )
        )
        elapsed = time.perf_counter() - start
    for a in answers:
        a.raise_for_status()
    return 1000 * elapsed


def render_in_chromium(dashboard: str, token: str, rounds: int) -> tuple[list[float], list[float]]:
    """(render ms, whole refresh ms) per round, measured by the page itself."""
    from playwright.sync_api import sync_playwright

    render, whole = [], []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"],
        )
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.goto(dashboard)
            page.fill("#token", token)
            page.click("#login button[type=submit]")
            page.wait_for_selector("#graph-edges tbody tr")
            page.select_option("#refresh", "0")
            for _ in range(rounds):
                before = page.evaluate("() => document.getElementById('main').dataset.loaded")
                # A new graph each round: the layout runs, not only a relabel.
                page.select_option("#graph-type", "app")
                page.wait_for_function(
                    "b => document.getElementById('main').dataset.loaded !== b", arg=before
                )
                before = page.evaluate("() => document.getElementById('main').dataset.loaded")
                page.select_option("#graph-type", "workload")
                page.wait_for_function(
                    "b => document.getElementById('main').dataset.loaded !== b", arg=before
                )
                data = page.evaluate("() => ({...document.getElementById('main').dataset})")
                render.append(float(data["renderMs"]))
                whole.append(float(data["loadMs"]) + float(data["renderMs"]))
            edges = page.locator("#graph-edges tbody tr").count()
            badges = page.locator(".lock-badge").count()
            print(f"  (page shows {edges} edges in its list view and {badges} lock badges)")
        finally:
            browser.close()
    return render, whole


def parse_seconds(text: str) -> float:
    return float(text[:-1]) * {"s": 1, "m": 60, "h": 3600}[text[-1]]


def measure_api(
    client: httpx.Client, prom_url: str, source: str, rounds: int
) -> tuple[list[float], list[float], list[float]]:
    """(PromQL alone ms, graph API ms, building ms) per round, with the response times from
    ``source``."""
    params = {"graphType": "workload", "duration": "5m"}
    deadline = time.monotonic() + 60
    while (body := client.get("/api/graph", params=params).json())["responseTimes"] != source:
        if time.monotonic() > deadline:
            raise SystemExit(f"the graph's response times are {body['responseTimes']}")
        time.sleep(1)
    client.get("/api/graph", params=params)  # warm-up, on this path
    print(f"  graph ({source}): {len(body['nodes'])} nodes, {len(body['edges'])} edges")
    prom_ms, api_ms, build_ms = [], [], []
    for _ in range(rounds):
        prom_ms.append(asyncio.run(promql_alone(prom_url, source)))
        t0 = time.perf_counter()
        answer = client.get("/api/graph", params=params).json()
        api_ms.append(1000 * (time.perf_counter() - t0))
        assert answer["responseTimes"] == source, answer["responseTimes"]
        build_ms.append(float(answer["timings"]["buildMs"]))
    return prom_ms, api_ms, build_ms


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", type=int, default=100)
    parser.add_argument("--edges", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="5 rounds")
    args = parser.parse_args()
    rounds = 5 if args.quick else args.rounds
    edges = mesh_shape(args.workloads, args.edges)
    rules = recording_rules()
    groups = [g["name"] for g in rules["groups"]]
    print(f"dashboard graph: {args.workloads} workloads, {len(edges)} edges; {machine()}")
    with tempfile.TemporaryDirectory(prefix="pilotfish-bench-dashboard-") as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        prom = filled_prometheus(work / "prom", free_port(), edges, rules=rules)
        series = httpx.get(
            f"{prom.url}/api/v1/query", params={"query": "count({__name__=~'istio_.*'})"}
        ).json()["data"]["result"][0]["value"][1]
        print(
            f"  Prometheus backfilled with {series} series in {time.perf_counter() - started:.1f}s"
        )
        try:
            # Each group's first evaluation, right after the backfill: every window has data.
            rule_s = prom.wait_for_rules(groups)
            with Processes(work) as procs:
                api_port, dash_port = free_port(), free_port()
                config = work / "cli-config"
                proc = procs.start(
                    [*CLI, "server", "--data-dir", str(work / "data"), "--store", "memory://",
                     "--listen", f"127.0.0.1:{api_port}", "--xds-listen",
                     f"127.0.0.1:{free_port()}", "--no-trace-collector", "--log-level",
                     "warning", "--dashboard-listen", f"127.0.0.1:{dash_port}",
                     "--prometheus-url", prom.url],
                    "server.log",
                    {"PILOTFISH_CONFIG": str(config), "PATH": "/usr/bin:/bin"},
                )  # fmt: skip
                dashboard = f"http://127.0.0.1:{dash_port}"

                def ready() -> bool:
                    if proc.poll() is not None:
                        raise SystemExit(f"control plane exited; see {work / 'server.log'}")
                    try:
                        return httpx.get(f"{dashboard}/", timeout=1).status_code == 200
                    except httpx.HTTPError:
                        return False

                wait_until(ready, 60, "the dashboard")
                token = (work / "data" / "admin-token").read_text().strip()
                client = httpx.Client(base_url=dashboard, timeout=30)
                client.post("/login", data={"token": token})
                recorded = measure_api(client, prom.url, "recorded", rounds)
                render_ms, whole_ms = render_in_chromium(dashboard, token, rounds)
                prom.load_rules(None)  # a Prometheus without the rules
                computed = measure_api(client, prom.url, "computed", rounds)
                client.close()
        finally:
            prom.stop()
    rows: list[list[str]] = []
    for source, (prom_ms, api_ms, build_ms) in (("recorded", recorded), ("computed", computed)):
        queries = "requests, TCP, " + ("recorded p50/p95/p99" if source == "recorded" else
                                       "duration buckets")  # fmt: skip
        rows += [
            [f"{source}: PromQL alone ({queries})", f"{median(prom_ms):.0f}",
             f"{max(prom_ms):.0f}", "", ""],
            [f"{source}: graph API (GET /api/graph)", f"{median(api_ms):.0f}",
             f"{max(api_ms):.0f}", f"{TARGET_API_MS:.0f}", ratio(median(api_ms), TARGET_API_MS)],
            ["  of which building the graph", f"{median(build_ms):.0f}", f"{max(build_ms):.0f}",
             "", ""],
        ]  # fmt: skip
    rows += [
        [
            "render in Chromium",
            f"{median(render_ms):.0f}",
            f"{max(render_ms):.0f}",
            f"{TARGET_RENDER_MS:.0f}",
            ratio(median(render_ms), TARGET_RENDER_MS),
        ],
        [
            "whole refresh (fetch + render, recorded)",
            f"{median(whole_ms):.0f}",
            f"{max(whole_ms):.0f}",
            "",
            "",
        ],
    ]
    print(table(["step", "median ms", "worst ms", "target ms", "median / target"], rows))
    print(f"graph API, recorded / computed: {ratio(median(recorded[1]), median(computed[1]))}")
    share = 0.0
    for name in groups:
        window = name.rsplit("-", 1)[1]
        interval = RULE_INTERVALS[window]
        share += rule_s[name] / parse_seconds(interval)
        print(f"  rules {name}: {1000 * rule_s[name]:.0f} ms every {interval}")
    print(f"  rules in all: {100 * share:.1f}% of one core in Prometheus, all the time")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
