"""Flagger's Canary on the local mesh: real pods, Envoy, the mesh's Prometheus, real traffic.

One mesh for the module, with Flagger's Istio tutorial set up as ``samples/flagger`` writes
it (podinfo, the load tester, the public gateway) and the tutorial's Canary with a 2 s
interval. The tests run in order, each a release of podinfo through the ingress gateway
(``Host: app.example.com``) while a client counts every answer:

1. a healthy version is promoted step by step with no failed request;
2. as an A/B canary, only requests with the matching header reach the new version;
3. a version failing 20% of requests is rolled back after ``threshold`` failed checks;
4. a version adding 1 s of latency is rolled back on ``request-duration``;
5. an edit of the generated VirtualService is reported and kept, not overwritten;
6. a Canary for Bookinfo's ratings promotes a new template while the product page is loaded.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.e2e.conftest import REPO, Mesh, bring_up

pytestmark = pytest.mark.e2e

SAMPLES = REPO / "samples" / "flagger"
NS = "test"
HOST = "app.example.com"


def canary_body(**analysis: Any) -> dict[str, Any]:
    """The sample Canary with a 2 s interval (and the given analysis fields)."""
    body: dict[str, Any] = yaml.safe_load((SAMPLES / "canary.yaml").read_text())
    body["spec"]["analysis"].update({"interval": "2s", **analysis})
    for metric in body["spec"]["analysis"]["metrics"]:
        metric["interval"] = "30s"
    return body


def apply_body(mesh: Mesh, body: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(body))
    mesh.cli("apply", "-f", str(path))


def get(mesh: Mesh, kind: str, name: str) -> dict[str, Any]:
    out = mesh.cli("get", kind, name, "-n", NS, "-o", "json").stdout
    result: dict[str, Any] = json.loads(out)
    return result


def wait_for(check: Callable[[], Any], what: str, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"not within {timeout}s: {what}")


class Client:
    """Requests through the ingress gateway in a loop; counts answers by (status, version)."""

    def __init__(self, mesh: Mesh, headers: dict[str, str] | None = None) -> None:
        self.url = f"{mesh.gateway}/"
        self.headers = {"Host": HOST, **(headers or {})}
        self.seen: Counter[tuple[int, str]] = Counter()
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        with httpx.Client(timeout=10) as http:
            while not self.stop.is_set():
                try:
                    r = http.get(self.url, headers=self.headers)
                    version = r.headers.get("x-podinfo-version", "")
                    self.seen[(r.status_code, version)] += 1
                    if r.status_code != 200:
                        self.errors.append(f"{time.strftime('%H:%M:%S')} {r.status_code} {r.text}")
                except httpx.HTTPError as exc:
                    self.seen[(0, type(exc).__name__)] += 1
                    self.errors.append(f"{time.strftime('%H:%M:%S')} {exc!r}")
                time.sleep(0.05)

    def __enter__(self) -> Client:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=15)

    def failed(self) -> dict[tuple[int, str], int]:
        return {k: n for k, n in self.seen.items() if k[0] != 200}


def version_deployment(version: str, **env: str) -> dict[str, Any]:
    docs = list(yaml.safe_load_all((SAMPLES / "podinfo.yaml").read_text()))
    dep = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "podinfo")
    dep = copy.deepcopy(dep)
    container = dep["spec"]["template"]["spec"]["containers"][0]
    container["env"] = [
        {"name": "PODINFO_VERSION", "value": version},
        *({"name": k, "value": v} for k, v in env.items()),
    ]
    return dep


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    with bring_up(tmp_path_factory.mktemp("canary")) as m:
        m.cli("apply", "-f", str(SAMPLES / "podinfo.yaml"))
        m.wait_pods_ready(NS, 2)
        yield m


def explain(mesh: Mesh) -> str:
    """The canary's status, its events and the server's canary log lines, for a failure."""
    events = mesh.cli("get", "events", "-n", NS).stdout
    log = (mesh.root / "state" / "logs" / "server.log").read_text(errors="replace")
    lines = [line for line in log.splitlines() if "canary" in line][-40:]
    return json.dumps(status(mesh), indent=1)[:6000] + "\n" + events + "\n".join(lines)


def status(mesh: Mesh) -> dict[str, Any]:
    return dict(get(mesh, "canary", "podinfo").get("status") or {})


def canary_weight(mesh: Mesh) -> int:
    route = get(mesh, "virtualservice", "podinfo")["spec"]["http"][-1]["route"]
    return int(route[1]["weight"])


def release(
    mesh: Mesh, tmp: Path, dep: dict[str, Any], until: tuple[str, ...], timeout: float = 150
) -> tuple[list[int], dict[str, Any]]:
    """Apply a new template; the canary weights seen until the phase is one of ``until``."""
    before = status(mesh).get("lastAppliedSpec")
    apply_body(mesh, dep, tmp / "podinfo.json")
    weights: list[int] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = status(mesh)
        w = canary_weight(mesh)
        if not weights or weights[-1] != w:
            weights.append(w)
        if st.get("lastAppliedSpec") != before and st.get("phase") in until:
            return weights, st
        time.sleep(0.3)
    raise AssertionError(f"no {until} within {timeout}s: {json.dumps(status(mesh))[:3000]}")


def test_the_canary_initializes_the_primary_and_routes_the_apex_to_it(
    mesh: Mesh, tmp_path: Path
) -> None:
    apply_body(mesh, canary_body(threshold=10), tmp_path / "canary.json")
    wait_for(lambda: status(mesh).get("phase") == "Initialized", "Initialized", 90)
    wait_for(lambda: get(mesh, "deploy", "podinfo")["spec"]["replicas"] == 0, "scaled down", 10)
    assert get(mesh, "service", "podinfo")["spec"]["selector"] == {"app": "podinfo-primary"}
    mesh.wait_pods_ready(NS, 2)  # the primary and the load tester; the target scaled to zero
    names = {p["metadata"]["name"].rsplit("-", 2)[0] for p in mesh.pods(NS)}
    assert names == {"podinfo-primary", "flagger-loadtester"}
    r = httpx.get(f"{mesh.gateway}/", headers={"Host": HOST}, timeout=10)
    assert r.status_code == 200 and r.json()["version"] == "6.0.0"
    table = mesh.cli("get", "canaries", "-n", NS).stdout
    assert "Initialized" in table.splitlines()[1], table


def test_a_healthy_version_is_promoted_step_by_step_without_a_failed_request(
    mesh: Mesh, tmp_path: Path
) -> None:
    # With a custom metric from a MetricTemplate (Flagger's "404s percentage") as well.
    mesh.cli("apply", "-f", str(SAMPLES / "metric-template.yaml"))
    body = canary_body(threshold=12)
    body["spec"]["analysis"]["metrics"].append(
        {
            "name": "404s percentage",
            "templateRef": {"name": "not-found-percentage", "namespace": "istio-system"},
            "thresholdRange": {"max": 5},
            "interval": "30s",
        }
    )
    apply_body(mesh, body, tmp_path / "canary.json")
    with Client(mesh) as client:
        weights, st = release(mesh, tmp_path, version_deployment("6.0.1"), ("Succeeded", "Failed"))
        assert st["phase"] == "Succeeded", explain(mesh)
        wait_for(lambda: client.seen[(200, "6.0.1")] > 20, "the new version serves", 30)
    # Weights follow the steps (10..50); while the primary's pods are replaced every request
    # goes to the canary (100), then everything goes back to the (new) primary.
    shifted = [w for w in weights if w]
    assert shifted == sorted(shifted) and set(shifted) <= {10, 20, 30, 40, 50, 100}, weights
    assert {10, 50, 100} <= set(shifted), weights
    assert weights[-1] == 0
    assert client.failed() == {}, f"{client.seen}\n{client.errors[:5]}\n{explain(mesh)}"
    assert client.seen[(200, "6.0.0")] > 0 and client.seen[(200, "6.0.1")] > 0
    assert st["failedChecks"] < 12
    measured = [c for s in st["steps"] for c in s.get("checks", []) if c.get("ok") and "value" in c]
    names = {c["name"] for c in measured}
    assert names == {"request-success-rate", "request-duration", "404s percentage"}, st["steps"]
    assert all(c["value"] >= 99 for c in measured if c["name"] == "request-success-rate")
    out = mesh.cli("describe", "canary", "podinfo", "-n", NS).stdout
    assert "request-success-rate=100" in out and "Promotion completed!" in out, out
    assert get(mesh, "deploy", "podinfo")["spec"]["replicas"] == 0
    # The dashboard's graph shows the split the analysis made: the gateway called both the
    # primary and the canary workload in the last minutes.
    token = (mesh.data_dir / "admin-token").read_text().strip()
    with httpx.Client(base_url=mesh.dashboard, timeout=10) as dash:
        assert dash.post("/login", data={"token": token}).status_code in (200, 302, 303)

        def split() -> set[str]:
            params = {"graphType": "workload", "namespaces": NS, "duration": "5m"}
            graph = dash.get("/api/graph", params=params).json()
            return {
                e["target"]
                for e in graph["edges"]
                if e["source"] == "workload:istio-system:istio-ingressgateway" and e["rate"] > 0
            }

        wanted = {f"workload:{NS}:podinfo-primary", f"workload:{NS}:podinfo"}
        wait_for(lambda: wanted <= split(), "the graph to show the primary and the canary", 30)


def test_an_ab_canary_sends_only_requests_with_the_header_to_the_new_version(
    mesh: Mesh, tmp_path: Path
) -> None:
    body = canary_body(threshold=12, iterations=8)
    analysis = body["spec"]["analysis"]
    del analysis["stepWeight"], analysis["maxWeight"]
    analysis["match"] = [{"headers": {"x-canary": {"exact": "insider"}}}]
    apply_body(mesh, body, tmp_path / "canary.json")
    apply_body(mesh, version_deployment("6.0.4"), tmp_path / "podinfo.json")
    wait_for(lambda: status(mesh).get("abActive"), "the A/B route", 60)

    def insider_version() -> bool:
        r = httpx.get(f"{mesh.gateway}/", headers={"Host": HOST, "x-canary": "insider"})
        return r.headers.get("x-podinfo-version") == "6.0.4"

    wait_for(insider_version, "the A/B route in the gateway", 10)
    with Client(mesh, {"x-canary": "insider"}) as insider, Client(mesh) as others:
        time.sleep(4)
    assert status(mesh)["phase"] == "Progressing"
    assert set(insider.seen) == {(200, "6.0.4")}, insider.seen
    assert set(others.seen) == {(200, "6.0.1")}, others.seen
    wait_for(lambda: status(mesh).get("phase") in ("Succeeded", "Failed"), "the end", 120)
    assert status(mesh)["phase"] == "Succeeded", explain(mesh)


def test_a_version_failing_20_percent_is_rolled_back_after_threshold_failed_checks(
    mesh: Mesh, tmp_path: Path
) -> None:
    apply_body(mesh, canary_body(threshold=10), tmp_path / "canary.json")
    dep = version_deployment("6.0.2", PODINFO_FAIL_PERCENT="20")
    with Client(mesh) as client:
        weights, st = release(mesh, tmp_path, dep, ("Succeeded", "Failed"))
        time.sleep(2)
    assert st["phase"] == "Failed", st
    assert st["failedChecks"] == 10
    rates = [
        c["value"]
        for s in st["steps"]
        for c in s.get("checks", [])
        if c["name"] == "request-success-rate" and "value" in c
    ]
    assert rates and min(rates) < 99, st["steps"]
    assert canary_weight(mesh) == 0 and max(weights) <= 50
    wait_for(lambda: get(mesh, "deploy", "podinfo")["spec"]["replicas"] == 0, "scaled down", 10)
    # The primary kept serving the promoted version throughout; only the canary failed.
    assert client.seen[(200, "6.0.4")] > 0
    assert {v for (_, v) in client.failed()} <= {"6.0.2"}, client.seen
    events = mesh.cli("get", "events", "-n", NS).stdout
    assert "Canary failed! Scaling down podinfo.test" in events


def test_a_version_one_second_slower_is_rolled_back_on_request_duration(
    mesh: Mesh, tmp_path: Path
) -> None:
    dep = version_deployment("6.0.3", PODINFO_DELAY="1")
    with Client(mesh) as client:
        _, st = release(mesh, tmp_path, dep, ("Succeeded", "Failed"))
    assert st["phase"] == "Failed", st
    durations = [
        c["value"]
        for s in st["steps"]
        for c in s.get("checks", [])
        if c["name"] == "request-duration" and "value" in c
    ]
    assert durations and max(durations) > 500, st["steps"]
    # The primary kept serving; only requests the canary held past the retry timeout failed.
    assert client.seen[(200, "6.0.4")] > 0
    assert {v for (_, v) in client.failed()} <= {"6.0.3", ""}, client.seen


def test_an_edit_of_the_generated_virtual_service_is_reported_not_overwritten(
    mesh: Mesh, tmp_path: Path
) -> None:
    vs = get(mesh, "virtualservice", "podinfo")
    for key in ("resourceVersion", "uid", "creationTimestamp", "generation"):
        vs["metadata"].pop(key, None)
    vs["spec"]["http"][-1]["timeout"] = "7s"
    apply_body(mesh, vs, tmp_path / "vs.json")
    wait_for(
        lambda: "edited outside the Canary" in str(status(mesh).get("message")),
        "the edit reported",
        30,
    )
    time.sleep(3)  # more intervals: still not overwritten
    assert get(mesh, "virtualservice", "podinfo")["spec"]["http"][-1]["timeout"] == "7s"
    events = mesh.cli("get", "events", "-n", NS).stdout
    assert "VirtualService podinfo.test was edited outside the Canary" in events
    # Deleting the edited object lets the Canary write its own again.
    mesh.cli("delete", "virtualservice", "podinfo", "-n", NS)

    def rewritten() -> bool:
        vs = get_or_none(mesh, "virtualservice", "podinfo")
        return vs is not None and "timeout" not in json.dumps(vs["spec"])

    wait_for(rewritten, "the VirtualService written again", 30)
    wait_for(
        lambda: (
            httpx.get(f"{mesh.gateway}/", headers={"Host": HOST}, timeout=10).status_code == 200
        ),
        "podinfo served again",
        30,
    )
    assert "edited" not in str(status(mesh).get("message"))


def get_or_none(mesh: Mesh, kind: str, name: str) -> dict[str, Any] | None:
    res = mesh.cli("get", kind, name, "-n", NS, "-o", "json", check=False)
    return json.loads(res.stdout) if res.returncode == 0 else None


def test_a_bookinfo_service_is_promoted_under_load_without_a_failed_page(
    mesh: Mesh, tmp_path: Path
) -> None:
    """The issue's first scenario on Bookinfo itself: a Canary for ``ratings`` (called by
    reviews v2 and v3), a new ratings template, the product page loaded throughout."""
    bookinfo = REPO / "samples" / "bookinfo"
    mesh.cli("label", "namespace", "default", "istio-injection=enabled", "--overwrite")
    mesh.cli("apply", "-f", str(bookinfo / "platform" / "bookinfo.yaml"))
    mesh.cli("apply", "-f", str(bookinfo / "networking" / "bookinfo-gateway.yaml"))
    mesh.wait_pods_ready("default", 6, timeout=120)
    body = canary_body(threshold=12, stepWeight=25)
    body["metadata"] = {"name": "ratings", "namespace": "default"}
    spec = body["spec"]
    spec["targetRef"]["name"] = "ratings-v1"
    spec["service"] = {"name": "ratings", "port": 9080}
    spec["analysis"]["webhooks"] = []
    apply_body(mesh, body, tmp_path / "ratings-canary.json")

    def ratings_status() -> dict[str, Any]:
        out = mesh.cli("get", "canary", "ratings", "-o", "json").stdout
        return dict(json.loads(out).get("status") or {})

    wait_for(lambda: ratings_status().get("phase") == "Initialized", "ratings Initialized", 90)
    docs = yaml.safe_load_all((bookinfo / "platform" / "bookinfo.yaml").read_text())
    dep = next(d for d in docs if d and d["metadata"]["name"] == "ratings-v1")
    dep["spec"]["template"]["spec"]["containers"][0]["env"].append(
        {"name": "RATINGS_RELEASE", "value": "2"}
    )
    pages: Counter[str] = Counter()
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=10) as http:
            while not stop.is_set():
                try:
                    r = http.get(f"{mesh.gateway}/productpage")
                    if r.status_code != 200:
                        pages[f"status {r.status_code}"] += 1
                    elif "Ratings service is currently unavailable" in r.text:
                        pages["ratings unavailable"] += 1
                    else:
                        pages["ok"] += 1
                except httpx.HTTPError as exc:
                    pages[type(exc).__name__] += 1
                time.sleep(0.05)

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    try:
        apply_body(mesh, dep, tmp_path / "ratings.json")
        weights: list[int] = []

        def done() -> bool:
            route = mesh.cli("get", "vs", "ratings", "-o", "json").stdout
            w = int(json.loads(route)["spec"]["http"][-1]["route"][1]["weight"])
            if not weights or weights[-1] != w:
                weights.append(w)
            return ratings_status().get("phase") in ("Succeeded", "Failed")

        wait_for(done, "the ratings release", 150)
    finally:
        stop.set()
        thread.join(timeout=15)
    st = ratings_status()
    assert st["phase"] == "Succeeded", json.dumps(st)[:4000]
    assert [w for w in weights if w] == [25, 50, 100], weights
    assert set(pages) == {"ok"}, pages
    primary = json.loads(mesh.cli("get", "deploy", "ratings-v1-primary", "-o", "json").stdout)
    env = primary["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "RATINGS_RELEASE", "value": "2"} in env
