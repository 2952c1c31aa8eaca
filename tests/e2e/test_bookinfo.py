"""Bookinfo on the local mesh, as the Istio tutorials run it: real pods, Envoy, iptables.

One mesh for the whole module: ``pilotfish up``, ``default`` labelled for injection,
``bookinfo.yaml`` + the gateway + the destination rules applied, then the tutorials' steps in
order (request routing, traffic shifting), the non-injected namespace, scaling, and finally
``pilotfish down`` with a check that nothing is left.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import REPO, Mesh, bring_up

pytestmark = pytest.mark.e2e

STAR = "glyphicon glyphicon-star"
NETWORKING = REPO / "samples" / "bookinfo" / "networking"


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    with bring_up(tmp_path_factory.mktemp("bookinfo")) as m:
        m.cli("label", "namespace", "default", "istio-injection=enabled", "--overwrite")
        m.cli("apply", "-f", str(REPO / "samples/bookinfo/platform/bookinfo.yaml"))
        m.cli("apply", "-f", str(NETWORKING / "bookinfo-gateway.yaml"))
        m.cli("apply", "-f", str(NETWORKING / "destination-rule-all.yaml"))
        m.wait_pods_ready("default", 6)
        yield m


def page(mesh: Mesh, cookies: httpx.Cookies | None = None) -> str:
    resp = httpx.get(f"{mesh.gateway}/productpage", cookies=cookies, timeout=15)
    assert resp.status_code == 200, resp.text[:500]
    return resp.text


def eventually(check: Callable[[], bool], what: str, timeout: float = 30, times: int = 10) -> None:
    """Wait until ``check`` holds ``times`` times in a row (config reaches every Envoy)."""
    deadline = time.monotonic() + timeout
    streak = 0
    while time.monotonic() < deadline:
        streak = streak + 1 if check() else 0
        if streak >= times:
            return
        time.sleep(0.05 if streak else 0.2)
    raise AssertionError(f"not {times} times in a row within {timeout}s: {what}")


def login(mesh: Mesh, user: str) -> httpx.Cookies:
    resp = httpx.post(f"{mesh.gateway}/login", data={"username": user}, timeout=10)
    assert resp.status_code in (200, 302), resp.text[:300]
    return resp.cookies


def test_every_bookinfo_pod_runs_with_its_sidecar(mesh: Mesh) -> None:
    pods = mesh.pods()
    assert {p["metadata"]["labels"]["app"] for p in pods} == {
        "productpage",
        "details",
        "reviews",
        "ratings",
    }
    for p in pods:
        names = [c["name"] for c in p["spec"]["containers"]]
        assert names[-1] == "istio-proxy", names
        statuses = p["status"]["containerStatuses"]
        assert [c["ready"] for c in statuses] == [True, True]
        assert p["status"]["phase"] == "Running"
        assert re.match(r"^[a-z0-9-]+-[a-z0-9]{10}-[a-z0-9]{5}$", p["metadata"]["name"])
        assert p["status"]["podIP"].startswith(mesh.pod_cidr.rsplit(".", 1)[0] + ".")
    deploys = json.loads(mesh.cli("get", "deploy", "-o", "json").stdout)["items"]
    assert {d["metadata"]["name"]: d["status"]["readyReplicas"] for d in deploys} == {
        "details-v1": 1,
        "ratings-v1": 1,
        "reviews-v1": 1,
        "reviews-v2": 1,
        "reviews-v3": 1,
        "productpage-v1": 1,
    }


#: An app that records, as it starts, whether its pod's sidecar is ready, then serves.
SIDECAR_AT_START = (
    "import http.server, urllib.request\n"
    "try:\n"
    "    code = urllib.request.urlopen('http://127.0.0.1:15021/healthz/ready', timeout=2).status\n"
    "except Exception as exc:\n"
    "    code = type(exc).__name__\n"
    "print('sidecar at app start:', code, flush=True)\n"
    "http.server.HTTPServer(('', 8080), http.server.SimpleHTTPRequestHandler).serve_forever()\n"
)


def test_hold_application_until_proxy_starts_starts_the_app_once_the_sidecar_is_ready(
    mesh: Mesh, tmp_path: Path
) -> None:
    # Istio's default starts the app alongside its sidecar; the pod's proxy.istio.io/config
    # (or the mesh's defaultConfig) holds it until the sidecar is ready.
    manifest = tmp_path / "held.json"
    manifest.write_text(
        json.dumps(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "held", "namespace": "default"},
                "spec": {
                    "selector": {"matchLabels": {"app": "held"}},
                    "template": {
                        "metadata": {
                            "labels": {"app": "held"},
                            "annotations": {
                                "proxy.istio.io/config": "holdApplicationUntilProxyStarts: true"
                            },
                        },
                        "spec": {
                            "containers": [
                                {
                                    "name": "app",
                                    "command": ["python3", "-c", SIDECAR_AT_START],
                                    "ports": [{"containerPort": 8080}],
                                }
                            ]
                        },
                    },
                },
            }
        )
    )
    mesh.cli("apply", "-f", str(manifest))
    try:

        def held_ready() -> bool:
            return any(
                p["metadata"]["name"].startswith("held-")
                and {"type": "Ready", "status": "True"}.items()
                <= next(
                    (c for c in p["status"].get("conditions") or [] if c["type"] == "Ready"), {}
                ).items()
                for p in mesh.pods()
            )

        eventually(held_ready, "the held pod is Ready", times=1)
        pod = next(p for p in mesh.pods() if p["metadata"]["name"].startswith("held-"))
        proxy = pod["spec"]["containers"][0]
        assert proxy["name"] == "istio-proxy"
        assert proxy["lifecycle"]["postStart"]["exec"]["command"] == ["pilot-agent", "wait"]
        log = mesh.local("logs", pod["metadata"]["name"], "-c", "app").stdout
        assert "sidecar at app start: 200" in log, log
        statuses = pod["status"]["containerStatuses"]
        assert [s["restartCount"] for s in statuses] == [0, 0]
    finally:
        mesh.cli("delete", "-f", str(manifest))


def test_a_second_up_of_the_same_mesh_reconciles_and_changes_nothing(mesh: Mesh) -> None:
    res = mesh.local("up", "--prefix", mesh.prefix)
    assert "already running" in res.stderr + res.stdout
    status = mesh.local("status")
    assert status.stdout.count("healthy") == 6, status.stdout  # with Prometheus and the addon names


def test_a_second_mesh_that_would_share_the_prefix_range_or_ports_is_refused(
    mesh: Mesh, tmp_path: Path
) -> None:
    before = mesh.pods()
    res = mesh.run(
        "pilotfish.cli.runtime_cmds",
        "up",
        "--data-dir", str(tmp_path / "data"),
        "--prefix", mesh.prefix,
        "--pod-cidr", mesh.pod_cidr,
        "--listen", f"127.0.0.1:{mesh.api_port}",
        "--gateway-port", f"80:{mesh.gateway_port}",
        check=False,
    )  # fmt: skip
    assert res.returncode == 1, res.stdout + res.stderr
    assert "another Pilotfish mesh is running here" in res.stderr
    assert f"data directory {mesh.data_dir}" in res.stderr
    assert f"the name prefix '{mesh.prefix}'" in res.stderr
    assert f"pilotfish down --data-dir {mesh.data_dir}" in res.stderr
    assert not (tmp_path / "state" / "mesh.json").exists()  # nothing started
    # The running mesh is untouched: same pods, every part healthy, pages served.
    assert [p["metadata"]["uid"] for p in mesh.pods()] == [p["metadata"]["uid"] for p in before]
    assert mesh.local("status").stdout.count("healthy") == 6
    assert "<title>Simple Bookstore App</title>" in page(mesh)


def test_the_pod_range_fails_closed_on_the_host(mesh: Mesh) -> None:
    routes = subprocess.run(
        ["ip", "route", "show", "type", "unreachable"], capture_output=True, text=True
    ).stdout
    assert mesh.pod_cidr in routes
    pod_ip = mesh.pods()[0]["status"]["podIP"]
    via = subprocess.run(["ip", "route", "get", pod_ip], capture_output=True, text=True).stdout
    assert f"dev {mesh.prefix}0" in via  # the bridge wins while it is there


def test_local_commands_find_the_mesh_without_flags(mesh: Mesh) -> None:
    pod = mesh.pod_named("ratings-v1")
    module = "pilotfish.cli.runtime_cmds"
    out = mesh.run(module, "exec", pod, "--", "python3", "-c", "print('inside')").stdout
    assert out.strip() == "inside"
    logs = mesh.run(module, "logs", pod, "-c", "istio-proxy").stdout
    assert logs.strip(), "the sidecar's log is empty"
    assert mesh.run(module, "status").stdout.count("healthy") == 6


def test_prometheus_scrapes_the_control_plane_the_gateway_and_every_sidecar(mesh: Mesh) -> None:
    assert httpx.get(f"{mesh.prometheus}/-/healthy", timeout=5).status_code == 200
    pods = {p["metadata"]["name"]: p["status"]["podIP"] for p in mesh.pods()}

    def up() -> dict[tuple[str, str], str]:
        body = httpx.get(f"{mesh.prometheus}/api/v1/query", params={"query": "up"}, timeout=5)
        return {
            (r["metric"]["job"], r["metric"].get("pod", "")): r["value"][1]
            for r in body.json()["data"]["result"]
        }

    want = {("istiod", ""), ("istio-ingressgateway", "istio-ingressgateway")}
    want |= {("kubernetes-pods", name) for name in pods}
    deadline = time.monotonic() + 60
    while {k: v for k, v in up().items() if k in want} != dict.fromkeys(want, "1"):
        assert time.monotonic() < deadline, f"not every target up: {up()}"
        time.sleep(1)
    targets = httpx.get(f"{mesh.prometheus}/api/v1/targets", timeout=5).json()["data"]
    scraped = {t["scrapeUrl"] for t in targets["activeTargets"]}
    assert {f"http://{ip}:15020/stats/prometheus" for ip in pods.values()} <= scraped


def test_istios_addon_names_answer_inside_the_mesh(mesh: Mesh) -> None:
    """Tutorial configs name the addons by service: from an app, through its sidecar."""
    pod = mesh.pod_named("productpage-v1")

    def get(url: str) -> str:
        return mesh.local("exec", pod, "--", "curl", "-sf", "--max-time", "5", url).stdout

    up = json.loads(get("http://prometheus.istio-system:9090/api/v1/query?query=up"))
    assert up["status"] == "success" and up["data"]["result"], up
    services = json.loads(get("http://tracing.istio-system/api/services"))
    assert isinstance(services["data"], list), services
    svc = json.loads(mesh.cli("get", "svc", "-n", "istio-system", "-o", "json").stdout)["items"]
    assert {"prometheus", "tracing"} <= {i["metadata"]["name"] for i in svc}


def test_istioctl_habits_reach_a_pods_envoy(mesh: Mesh) -> None:
    """proxy-config, proxy-status POD and x describe pod on a real pod: the CLI enters the
    pod's network namespace to read its Envoy's admin."""
    pod = mesh.pod_named("productpage-v1")
    target = f"{pod}.default"
    clusters = mesh.cli("proxy-config", "cluster", target, "--fqdn", "reviews").stdout
    assert "reviews.default.svc.cluster.local" in clusters
    secrets = json.loads(mesh.cli("proxy-config", "secret", target, "-o", "json").stdout)
    chain = next(s for s in secrets if s["type"] == "Cert Chain")
    assert chain["identity"] == ["spiffe://cluster.local/ns/default/sa/bookinfo-productpage"]
    assert chain["valid"]
    mesh.cli("proxy-config", "log", target, "--level", "rbac:debug")
    levels = json.loads(mesh.cli("proxy-config", "log", target, "-o", "json").stdout)
    assert levels["rbac"] == "debug"
    assert "cluster_manager.cds" in mesh.cli("proxy-config", "stats", target).stdout
    agent = mesh.local("exec", pod, "-c", "istio-proxy", "--", "pilot-agent", "request", "GET",
                       "stats")  # fmt: skip
    assert "cluster_manager.cds" in agent.stdout
    gateway = mesh.cli("proxy-config", "listener", "istio-ingressgateway.istio-system").stdout
    assert "Route: http." in gateway  # the gateway, in the host network namespace
    eventually(
        lambda: "Clusters Match" in mesh.cli("proxy-status", target).stdout,
        "the control plane's config and the pod's Envoy to match",
        times=1,
    )
    described = mesh.cli("x", "describe", "pod", pod).stdout.splitlines()
    assert "Service: productpage" in described
    assert "   Pod Ports: 9080 (productpage), 15090 (istio-proxy)" in described


def test_productpage_is_served_through_the_ingress_gateway(mesh: Mesh) -> None:
    text = page(mesh)
    assert "<title>Simple Bookstore App</title>" in text
    assert "Error fetching product details" not in text
    assert "Error fetching product reviews" not in text


def reviews_without_stars(text: str) -> bool:
    """The page shows the reviews themselves (not the error a missing reviews gives), and no
    stars: what reviews v1 serves."""
    return (
        "Error fetching product reviews" not in text
        and "Book Reviews" in text
        and "Reviewer1" in text
        and STAR not in text
    )


def test_a_page_view_is_one_trace_across_bookinfo(mesh: Mesh) -> None:
    mesh.cli("apply", "-f", str(REPO / "samples/operator/demo.yaml"))  # 100% sampling
    query = f"http://127.0.0.1:{mesh.trace_query_port}/api/traces"
    wanted = {
        "istio-ingressgateway.istio-system",
        "productpage.default",
        "details.default",
        "reviews.default",
        "ratings.default",
    }
    found: list[set[str]] = []

    def one_trace_with_every_service() -> bool:
        page(mesh)  # reviews v2 and v3 call ratings; v1 does not: a few views cover them
        params = {"service": "productpage.default", "lookback": "5m", "limit": "50"}
        traces = httpx.get(query, params=params, timeout=10).json()["data"]
        found[:] = [{p["serviceName"] for p in t["processes"].values()} for t in traces]
        return any(wanted <= services for services in found)

    deadline = time.monotonic() + 60
    while not one_trace_with_every_service():
        assert time.monotonic() < deadline, f"no trace with {wanted}: {found[:5]}"
        time.sleep(1)


def test_istios_dashboard_and_graph_queries_answer_from_prometheus(mesh: Mesh) -> None:
    """Kiali's graph query (every Bookinfo edge, with mutual TLS) and Grafana's workload
    panels, as written for Istio, against the mesh's own Prometheus."""
    wanted = {
        ("istio-ingressgateway", "productpage-v1"),
        ("productpage-v1", "details-v1"),
        ("productpage-v1", "reviews-v1"),
        ("productpage-v1", "reviews-v2"),
        ("productpage-v1", "reviews-v3"),
        ("reviews-v2", "ratings-v1"),
        ("reviews-v3", "ratings-v1"),
    }
    graph = (
        'sum(istio_requests_total{reporter="destination"}) '
        "by (source_workload, destination_workload, connection_security_policy)"
    )

    def promql(query: str) -> list[dict[str, Any]]:
        body = httpx.get(f"{mesh.prometheus}/api/v1/query", params={"query": query}, timeout=10)
        return list(body.json()["data"]["result"])

    edges: dict[tuple[str, str], str] = {}
    deadline = time.monotonic() + 90
    while not wanted <= set(edges):
        assert time.monotonic() < deadline, f"edges seen: {sorted(edges)}"
        for _ in range(6):
            page(mesh)
        time.sleep(2)
        edges = {
            (r["metric"]["source_workload"], r["metric"]["destination_workload"]): r["metric"][
                "connection_security_policy"
            ]
            for r in promql(graph)
        }
    assert {edges[e] for e in wanted} == {"mutual_tls"}
    # Envoy flushes histograms every stats interval (5 s) while counters count at once, so
    # the buckets may still be empty (a NaN quantile) when the first requests are counted.
    p50_query = (
        "histogram_quantile(0.5, sum(istio_request_duration_milliseconds_bucket"
        '{reporter="destination",destination_workload="productpage-v1"}) by (le))'
    )
    deadline = time.monotonic() + 45
    while not ((p50 := promql(p50_query)) and float(p50[0]["value"][1]) > 0):
        assert time.monotonic() < deadline, p50
        page(mesh)
        time.sleep(2)
    sizes = promql('sum(istio_response_bytes_sum{reporter="source"}) by (source_workload)')
    assert {r["metric"]["source_workload"] for r in sizes} >= {"productpage-v1", "reviews-v2"}
    # The mesh's Prometheus also records the dashboard graph's response times (its rules run
    # every 15 s for the 1 m window) next to the raw series above.
    recorded = (
        'edge:istio_request_duration_milliseconds:quantile_rate1m{reporter="source",'
        'source_workload="productpage-v1",destination_workload="details-v1"}'
    )
    deadline = time.monotonic() + 45
    while len(times := promql(recorded)) < 3:
        assert time.monotonic() < deadline, times
        page(mesh)
        time.sleep(2)
    assert {r["metric"]["quantile"] for r in times} == {"0.5", "0.95", "0.99"}
    assert all(float(r["value"][1]) > 0 for r in times)


def test_all_v1_shows_no_stars(mesh: Mesh) -> None:
    mesh.cli("apply", "-f", str(NETWORKING / "virtual-service-all-v1.yaml"))
    eventually(
        lambda: reviews_without_stars(page(mesh)), "every page with reviews, without stars (v1)"
    )


def test_reviews_test_v2_gives_jason_black_stars_and_others_none(mesh: Mesh) -> None:
    mesh.cli("apply", "-f", str(NETWORKING / "virtual-service-reviews-test-v2.yaml"))
    jason = login(mesh, "jason")

    def jason_black() -> bool:
        text = page(mesh, jason)
        return STAR in text and 'color="black"' in text and 'color="red"' not in text

    eventually(jason_black, "jason sees black stars (reviews v2)")
    anonymous = [page(mesh) for _ in range(10)]
    assert all(STAR not in t for t in anonymous)
    someone = login(mesh, "alice")
    assert all(STAR not in page(mesh, someone) for _ in range(10))


def test_50_v3_stars_about_half_of_the_pages(mesh: Mesh) -> None:
    mesh.cli("apply", "-f", str(NETWORKING / "virtual-service-reviews-50-v3.yaml"))
    eventually(lambda: 'color="red"' in page(mesh), "red stars appear (reviews v3)", times=1)
    # Each request picks v1 or v3 at random: 40-60 of 100 holds with ~94% probability, so a
    # sample outside is drawn again (three independent samples outside: ~0.02%).
    counts = []
    for _ in range(3):
        pages = [page(mesh) for _ in range(100)]
        starred = [t for t in pages if STAR in t]
        assert all('color="red"' in t and 'color="black"' not in t for t in starred)
        counts.append(len(starred))
        if 40 <= counts[-1] <= 60:
            break
    assert 40 <= counts[-1] <= 60, counts


def test_app_code_is_unchanged_and_its_calls_are_captured(mesh: Mesh) -> None:
    source = (REPO / "samples/bookinfo/src/productpage.py").read_text()
    assert "http://" in source and '"reviews"' in source.replace("'", '"')
    pod = mesh.pod_named("productpage-v1")
    body = next(p for p in mesh.pods() if p["metadata"]["name"] == pod)
    spec_env = [e["name"] for e in body["spec"]["containers"][0].get("env") or []]
    assert not any(n.startswith(("REVIEWS", "DETAILS")) for n in spec_env)
    # The app resolves `reviews` to the VIP in its own hosts file ...
    hosts = mesh.local("exec", pod, "--", "cat", "/etc/hosts").stdout
    vip = json.loads(mesh.cli("get", "svc", "reviews", "-o", "json").stdout)["spec"]["clusterIP"]
    assert re.search(rf"^{re.escape(vip)}\s+reviews reviews.default ", hosts, re.M), hosts
    # ... and its connections to it went through its sidecar (outbound, per subset).
    stats = mesh.local(
        "exec", pod, "-c", "istio-proxy", "--", "curl", "-s", "http://127.0.0.1:15000/stats"
    ).stdout
    sent = re.findall(
        r"cluster\.outbound\|9080\|v[13]\|reviews\.default\.svc\.cluster\.local"
        r"\.upstream_rq_total: (\d+)",
        stats,
    )
    assert sent and sum(int(n) for n in sent) > 0, stats[:2000]
    logs = mesh.local("logs", pod).stdout
    assert '"GET /productpage" 200' in logs
    assert mesh.local("logs", pod, "-c", "istio-proxy").stdout != ""


#: A client without a sidecar: namespace ``legacy`` has no injection label.
LEGACY_CLIENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "sleep", "namespace": "legacy"},
    "spec": {
        "replicas": 1,
        "selector": {"matchLabels": {"app": "sleep"}},
        "template": {
            "metadata": {"labels": {"app": "sleep"}},
            "spec": {
                "containers": [
                    {
                        "name": "sleep",
                        "command": ["python3", "-c", "import time; time.sleep(1e9)"],
                    }
                ]
            },
        },
    },
}


def legacy_client(mesh: Mesh, tmp_path: Path) -> dict[str, Any]:
    """The ``sleep`` pod of namespace ``legacy`` (no sidecar), created when missing."""
    listed = json.loads(mesh.cli("get", "namespaces", "-o", "json").stdout)["items"]
    if "legacy" not in {n["metadata"]["name"] for n in listed}:
        mesh.cli("create", "namespace", "legacy")
    path = tmp_path / "sleep.json"
    path.write_text(json.dumps(LEGACY_CLIENT))
    mesh.cli("apply", "-f", str(path))
    (pod,) = mesh.wait_pods_ready("legacy", 1, timeout=30)
    return pod


def test_a_pod_in_a_namespace_without_injection_has_no_sidecar(mesh: Mesh, tmp_path: Path) -> None:
    pod = legacy_client(mesh, tmp_path)
    assert [c["name"] for c in pod["spec"]["containers"]] == ["sleep"]
    assert "sidecar.istio.io/status" not in (pod["metadata"].get("annotations") or {})
    name = pod["metadata"]["name"]
    rules = mesh.local("exec", name, "-n", "legacy", "--root", "--", "iptables-save").stdout
    assert "ISTIO_OUTPUT" not in rules and "PF_SERVICES" in rules
    # No Envoy in the pod, yet service names work: the runtime balances VIPs like kube-proxy.
    refused = mesh.local(
        "exec",
        name,
        "-n",
        "legacy",
        "--",
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "http://127.0.0.1:15001/",
        check=False,
    )
    assert refused.stdout.strip() in ("000", "")

    def legacy_code() -> str:
        res = mesh.local(
            "exec",
            name,
            "-n",
            "legacy",
            "--",
            "curl",
            "-s",
            "-m",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "http://productpage.default:9080/productpage",
            check=False,
        )
        return res.stdout.strip()

    assert legacy_code() == "200"  # PERMISSIVE: plaintext from outside the mesh is accepted
    strict = tmp_path / "strict.json"
    strict.write_text(
        json.dumps(
            {
                "apiVersion": "security.istio.io/v1",
                "kind": "PeerAuthentication",
                "metadata": {"name": "default", "namespace": "default"},
                "spec": {"mtls": {"mode": "STRICT"}},
            }
        )
    )
    mesh.cli("apply", "-f", str(strict))
    try:
        eventually(lambda: legacy_code() != "200", "STRICT refuses the legacy client", times=3)
        # ... while the mesh itself (gateway -> productpage -> reviews, all mTLS) still works.
        assert "Error fetching product reviews" not in page(mesh)
    finally:
        mesh.cli("delete", "-f", str(strict))
    eventually(lambda: legacy_code() == "200", "PERMISSIVE again", times=1)


def test_bookinfo_keeps_working_under_mesh_wide_strict(mesh: Mesh, tmp_path: Path) -> None:
    """The tutorials' first security step: PeerAuthentication STRICT in the root namespace."""
    strict = tmp_path / "mesh-strict.yaml"
    strict.write_text(
        "apiVersion: security.istio.io/v1beta1\n"
        "kind: PeerAuthentication\n"
        "metadata: {name: default, namespace: istio-system}\n"
        "spec:\n  mtls: {mode: STRICT}\n"
    )
    mesh.cli("apply", "-f", str(NETWORKING / "virtual-service-reviews-v3.yaml"))
    mesh.cli("apply", "-f", str(strict))
    try:
        # Plaintext from outside the mesh (the host, straight to each pod) is refused: STRICT
        # has reached every server of the page. Waited for first: the whole page below was
        # served before the policy too (PERMISSIVE), so only now does it prove mutual TLS.
        ips = {
            p["status"]["podIP"]: p["metadata"]["labels"]["app"]
            for p in mesh.pods()
            if p["metadata"]["labels"].get("app") in ("productpage", "details", "ratings")
            or p["metadata"]["labels"].get("version") == "v3"
        }
        assert set(ips.values()) == {"details", "productpage", "ratings", "reviews"}, ips

        def plaintext_refused() -> bool:
            for ip in ips:
                try:
                    httpx.get(f"http://{ip}:9080/", timeout=5)
                except httpx.HTTPError:
                    continue
                return False
            return True

        eventually(plaintext_refused, "plaintext from the host refused by every pod", times=3)

        # gateway -> productpage -> details, reviews -> ratings: every hop mutual TLS.
        def whole_page() -> bool:
            text = page(mesh)
            return (
                'color="red"' in text
                and "Error fetching product details" not in text
                and "Error fetching product reviews" not in text
                and "Ratings service is currently unavailable" not in text
            )

        eventually(whole_page, "the whole product page (red stars) under mesh-wide STRICT")
    finally:
        mesh.cli("delete", "-f", str(strict))


def test_scaling_up_and_down_and_a_deleted_pod_is_replaced(mesh: Mesh) -> None:
    deploy = json.loads(mesh.cli("get", "deploy", "details-v1", "-o", "json").stdout)
    for key in ("resourceVersion", "uid", "creationTimestamp", "generation"):
        deploy["metadata"].pop(key, None)
    deploy.pop("status", None)
    deploy["spec"]["replicas"] = 2
    mesh.cli("apply", "-f", "-", input=json.dumps(deploy))
    pods = [
        p
        for p in mesh.wait_pods_ready("default", 7)
        if p["metadata"]["name"].startswith("details-v1-")
    ]
    assert len(pods) == 2
    victim = pods[0]["metadata"]["name"]
    mesh.cli("delete", "pod", victim)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        names = [p["metadata"]["name"] for p in mesh.wait_pods_ready("default", 7)]
        if victim not in names:
            break
        time.sleep(0.3)
    assert victim not in names
    assert sum(n.startswith("details-v1-") for n in names) == 2
    deploy["spec"]["replicas"] = 1
    mesh.cli("apply", "-f", "-", input=json.dumps(deploy))
    mesh.wait_pods_ready("default", 6)
    assert "Error fetching product details" not in page(mesh)


class Load:
    """Product page views through the gateway, in a thread, until stopped (Bookinfo under load)."""

    def __init__(self, mesh: Mesh) -> None:
        self.mesh = mesh
        self.stop = threading.Event()
        self.sent = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self.stop.is_set():
                try:
                    client.get(f"{self.mesh.gateway}/productpage")
                    self.sent += 1
                except httpx.HTTPError:
                    pass
                self.stop.wait(0.05)

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(15)


def test_the_dashboard_shows_bookinfo_live(mesh: Mesh, tmp_path: Path) -> None:
    """`pilotfish dashboard` in Chromium: the graph with locks and latencies, a fault turning
    an edge red, charts, a trace across the mesh and its waterfall, a wizard's split."""
    from tests.e2e.browser import chromium

    mesh.cli("apply", "-f", str(REPO / "samples/operator/demo.yaml"))  # 100% sampling
    mesh.cli("delete", "vs", "reviews", "--ignore-not-found")  # every version gets calls
    legacy = legacy_client(mesh, tmp_path)["metadata"]["name"]
    fault = tmp_path / "ratings-abort.yaml"
    fault.write_text(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
        "metadata: {name: ratings, namespace: default}\n"
        "spec:\n  hosts: [ratings]\n  http:\n  - fault:\n      abort:\n"
        "        httpStatus: 500\n        percentage: {value: 100}\n"
        "    route:\n    - destination: {host: ratings}\n"
    )
    link = next(
        w for w in mesh.cli("dashboard", "--browser=false").stdout.split() if "/login/" in w
    )
    assert link.startswith(f"{mesh.dashboard}/login/")
    gw, pp = "workload:istio-system:istio-ingressgateway", "workload:default:productpage-v1"
    reviews = [f"workload:default:reviews-{v}" for v in ("v1", "v2", "v3")]
    ratings = "workload:default:ratings-v1"
    wanted = {(gw, pp), (pp, "workload:default:details-v1")}
    wanted |= {(pp, r) for r in reviews} | {(reviews[1], ratings), (reviews[2], ratings)}
    codes: list[str] = []

    def legacy_calls(count: int) -> None:
        """Plaintext calls from outside the mesh (PERMISSIVE): the ``unknown`` source. Made
        while waiting too: a rate needs the counter to grow between two scrapes."""
        for _ in range(count):
            url = "http://productpage.default:9080/productpage"
            res = mesh.local("exec", legacy, "-n", "legacy", "--", "curl", "-s", "-m", "5",
                             "-o", "/dev/null", "-w", "%{http_code}", url, check=False)  # fmt: skip
            codes.append(res.stdout.strip() or f"exit {res.returncode}")

    with Load(mesh), chromium("dashboard") as b:
        legacy_calls(5)
        page = b.page
        page.goto(mesh.dashboard)
        page.wait_for_selector("#login")  # no session: the sign-in form
        b.shot("0-sign-in")
        page.goto(link)  # the one-time link signs in
        page.wait_for_selector("#graph-edges")
        page.select_option("#duration", "1h")  # every edge earlier tests drove traffic over

        def graph() -> dict[str, Any]:
            return dict(page.evaluate("() => window.pilotfish.graph()") or {})

        def edges() -> dict[tuple[str, str], dict[str, Any]]:
            return {(e["source"], e["target"]): e for e in graph().get("edges", [])}

        deadline = time.monotonic() + 120
        while not wanted <= set(edges()) or ("unknown", pp) not in edges():
            assert time.monotonic() < deadline, f"edges: {sorted(edges())}; legacy: {codes}"
            legacy_calls(1)
            page.click("#graph-refresh")
            page.wait_for_timeout(2000)
        nodes = {n["id"] for n in graph()["nodes"]}
        assert nodes >= {gw, pp, "workload:default:details-v1", *reviews, ratings}
        # The list view carries every node and edge for screen readers.
        listed = page.inner_text("#graph-nodes")
        for name in ("productpage-v1", "details-v1", "reviews-v1", "reviews-v2", "reviews-v3",
                     "ratings-v1", "istio-ingressgateway"):  # fmt: skip
            assert name in listed
        assert page.locator("#graph-edges tbody tr").count() == len(edges())
        # Locks on every sidecar-to-sidecar edge (automatic mTLS), none from the plain client.
        for src, dst in wanted:
            assert page.locator(f'.lock-badge[data-edge="{src}->{dst}"]').count() == 1, (src, dst)
        assert page.locator(f'.lock-badge[data-edge="unknown->{pp}"]').count() == 0
        deadline = time.monotonic() + 30  # the server's plaintext requests scraped
        while (plain := edges()[("unknown", pp)])["mtlsPct"] != 0:
            assert time.monotonic() < deadline, plain
            page.click("#graph-refresh")
            page.wait_for_timeout(2000)
        # p99 on the edge labels: plausible (a few ms to a few seconds).
        page.select_option("#edge-label", "p99")
        label = page.evaluate(
            "id => window.pilotfish.cy.getElementById(id).data('label')", f"{pp}->{reviews[2]}"
        )
        ms = float(re.fullmatch(r"p99 ([\d.]+)ms", label).group(1))  # type: ignore[union-attr]
        assert 0.5 <= ms <= 10_000, label
        b.shot("1-graph")
        # Clicking productpage opens its side panel with charts that have data.
        pos = page.evaluate("id => window.pilotfish.cy.getElementById(id).renderedPosition()", pp)
        box = page.locator("#cy").bounding_box()
        page.mouse.click(box["x"] + pos["x"], box["y"] + pos["y"])
        page.wait_for_selector('#side-panel[data-node="' + pp + '"] .panel[data-points]')
        points = [int(p) for p in page.locator("#side-panel .panel").evaluate_all(
            "els => els.map(e => e.dataset.points || '0')")]  # fmt: skip
        assert points and points[0] > 0, points
        assert page.locator("#side-panel .traces-link").count() == 1
        b.shot("2-productpage")
        # A 100% abort on ratings: the edge from reviews to ratings turns red.
        mesh.cli("apply", "-f", str(fault))
        try:
            page.select_option("#duration", "1m")
            page.select_option("#edge-label", "error")
            red: list[dict[str, Any]] = []
            deadline = time.monotonic() + 120
            while not red:
                assert time.monotonic() < deadline, f"no red reviews->ratings edge: {edges()}"
                page.click("#graph-refresh")
                page.wait_for_timeout(2000)
                g = graph()
                labels = {n["id"]: n["label"] for n in g.get("nodes", [])}
                red = [
                    e
                    for e in g.get("edges", [])
                    if labels.get(e["source"], "").startswith("reviews")
                    and labels.get(e["target"], "").startswith("ratings")
                    and e["health"] == "failure"
                ]
            color = page.evaluate(
                "id => window.pilotfish.cy.getElementById(id).data('color')", red[0]["id"]
            )
            assert color == "#cc0000"
            b.shot("3-fault")
        finally:
            mesh.cli("delete", "-f", str(fault))
        # The edges' response times come from the mesh's Prometheus' recording rules (every
        # 15 s for the 1 m window) once they give every edge with requests its p50/p95/p99:
        # then every HTTP edge of that same graph has a p99.
        deadline = time.monotonic() + 90
        while (shown := graph()).get("responseTimes") != "recorded":
            assert time.monotonic() < deadline, shown.get("responseTimes")
            page.click("#graph-refresh")
            page.wait_for_timeout(2000)
        http = [e for e in shown["edges"] if e["protocol"] == "http"]
        assert http and all(e[p] is not None for e in http for p in ("p50", "p95", "p99")), http
        # Traces: a trace through gateway, productpage, reviews and ratings, its waterfall.
        page.goto(f"{mesh.dashboard}/#traces?service=productpage.default")
        page.wait_for_selector("#traces-table tbody tr")
        wide = "els => els.findIndex(e => Number(e.dataset.services) >= 4)"
        deadline = time.monotonic() + 60
        while (index := page.locator("#traces-table tbody tr").evaluate_all(wide)) < 0:
            assert time.monotonic() < deadline, page.inner_text("#trace-results")[:2000]
            page.click("#trace-find")
            page.wait_for_timeout(1500)
        page.locator("#traces-table tbody tr").nth(index).locator("a").click()
        page.wait_for_selector("#waterfall .span-row")
        services = set(page.locator("#waterfall .span-name").evaluate_all(
            "els => els.map(e => e.firstChild.textContent.trim())"))  # fmt: skip
        assert len(services) >= 4, services
        page.locator("#waterfall .span-row").first.click()
        assert "http" in page.inner_text("#span-tags").lower()
        b.shot("4-traces")
        # Metrics and config pages render.
        page.goto(f"{mesh.dashboard}/#metrics")
        page.wait_for_selector("#metric-panels .panel[data-points]")
        b.shot("5-metrics")
        page.goto(f"{mesh.dashboard}/#config")
        page.wait_for_selector("#proxies-table tbody tr")
        assert "productpage" in page.inner_text("#proxies-table")
        b.shot("6-config")
        # The traffic-shifting wizard: 90/10 between reviews v1 and v2, dry run then apply.
        page.goto(f"{mesh.dashboard}/#wizards?service=default/reviews&wizard=traffic-shifting")
        page.wait_for_selector("#wz-w\\:v1")
        page.fill("#wz-w\\:v1", "90")
        page.fill("#wz-w\\:v2", "10")
        page.fill("#wz-w\\:v3", "0")
        page.click("#wizard-apply")
        page.wait_for_selector("#wizard-applied.ok")
        assert "Server-side dry run: accepted." in page.inner_text("#wizard-dryrun")
        assert "weight: 90" in page.inner_text("#wizard-yaml")
        b.shot("7-wizard")
        assert b.errors == [], b.errors
    stored = json.loads(mesh.cli("get", "vs", "reviews", "-o", "json").stdout)
    route = stored["spec"]["http"][0]["route"]
    assert [(r["destination"]["subset"], r["weight"]) for r in route] == [("v1", 90), ("v2", 10)]
    # `pilotfish dashboard envoy POD`: the pod's Envoy admin through a forwarded local port.
    pod = mesh.pod_named("productpage-v1")
    forward = subprocess.Popen(
        [sys.executable, "-m", "pilotfish.cli.main", "dashboard", "envoy", f"{pod}.default",
         "--browser=false"],
        env=mesh.env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert forward.stdout is not None
        line = forward.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert url and f"Envoy admin of {pod}.default" in line, line
        info = httpx.get(f"{url.group(0)}/server_info", timeout=10).json()
        assert info["state"] == "LIVE"
        assert "productpage" in httpx.get(f"{url.group(0)}/clusters", timeout=10).text
    finally:
        forward.terminate()
        forward.wait(10)


def test_down_leaves_nothing_behind(mesh: Mesh) -> None:
    assert mesh.leftovers() != []  # the check sees a running mesh
    out = mesh.local("down").stdout
    assert "Pilotfish is down." in out
    assert mesh.leftovers() == []
    assert mesh.local("status", check=False).returncode == 1
